"""A catalogue of bad input. Each case runs the real entry point (the `snakemake` command, or the module
a rule calls) and expects a message that names the input and what is wrong, a non-zero exit before any
heavy work, and nothing written that could pass for a finished output.

Schema checks key by key are unit-tested in test_config.py; here is what a user sees end to end."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT, snakemake

TINY = "tests/config/tiny.yaml"


def _config(project: Path) -> dict:
    return yaml.safe_load((project / TINY).read_text())


def _rewrite_tweets(project: Path, change) -> None:
    path = project / "tests/data/tiny/tweets.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(change(lines)) + "\n")


def _edit_row(row: int, label: str):
    """Give data row `row` of tweets.csv the label cell `label`."""
    def change(lines):
        text, _ = lines[row].rsplit(",", 1)
        lines[row] = f"{text},{label}"
        return lines
    return change


def _blank_texts(lines):
    return [lines[0]] + ['"   ",' + line.rsplit(",", 1)[1] for line in lines[1:]]


# (id, edit of the config dict, edit of the project's files, message pattern, what must not exist after)
# Config cases stop while Snakemake reads the config: no job runs, no folder is made.
CONFIG_CASES = [
    ("misspelled_top_level_key", lambda c: c.update(seed=[0]), None,
     r"seed: unknown key \(did you mean 'seeds'\?\)"),
    ("misspelled_nested_key", lambda c: c["interpolation"].update(alpha=[0.5]), None,
     r"interpolation.alpha: unknown key \(did you mean 'alphas'\?\)"),
    ("wrong_type", lambda c: c["finetune"].update(steps="many"), None,
     r"finetune.steps: 'many' is not of type 'integer'"),
    ("wrong_type_in_a_dataset_override", lambda c: c["datasets"]["bbc"].update(split={"max_train": 1.5}), None,
     r"datasets.bbc.split.max_train: 1.5 is not of type 'integer'"),
    ("repeated_seeds", lambda c: c.update(seeds=[0, 1, 0]), None,
     r"seeds: \[0, 1, 0\] has non-unique elements"),
    ("dataset_name_with_a_path_separator", lambda c: c["datasets"].update({"a/b": c["datasets"]["bbc"]}), None,
     r"datasets: name 'a/b' is not allowed"),
    ("dataset_name_with_dot_dot", lambda c: c["datasets"].update({"..": c["datasets"]["bbc"]}), None,
     r"datasets: name '..' is not allowed"),
    ("wheel_name_with_dot_dot", lambda c: c["wheels"].update({"../evil": c["wheels"]["kr-fixture-data"]}), None,
     r"wheels: name '../evil' is not allowed"),
    ("missing_local_dataset_file", lambda c: c["datasets"]["tweets"]["source"].update(path="tests/data/tiny/nosuch.csv"),
     None, r"datasets.tweets.source.path: tests/data/tiny/nosuch.csv does not exist"),
    ("missing_local_base_model", lambda c: c["base_model"]["source"].update(path="models/nosuch"), None,
     r"base_model.source.path: models/nosuch does not exist"),
    ("region_of_an_unknown_dataset", lambda c: c["interpolation"]["region"].update(groups=["dataset:tweet"]), None,
     r"interpolation.region.groups.0: no dataset named 'tweet'"),
]

# Data cases: the sources stage runs first (priority) and stops at the bad dataset, before any finetuning.
DATA_CASES = [
    ("csv_row_without_a_label", None, _edit_row(7, ""),
     r"dataset tweets, split train: 1 row\(s\) have no label \(the first: row 7 as read\)"),
    ("csv_with_an_extra_label", None, _edit_row(3, "neutral"),
     r"dataset tweets, split train: unknown label\(s\) 'neutral' \(1x\); the dataset's labels are \['negative', 'positive'\]"),
    ("label_listed_but_missing_from_the_data",
     lambda c: c["datasets"]["tweets"].update(labels=["negative", "positive", "neutral"]), None,
     r"dataset tweets: label\(s\) \['neutral'\] are listed in `labels` but no example has them"),
    ("string_labels_where_numbers_are_expected", lambda c: c["datasets"]["tweets"].update(labels=[0, 1]), None,
     r"unknown label\(s\) '(positive|negative)' \(\d+x\), '(positive|negative)' \(\d+x\); the dataset's labels are \['0', '1'\]\. "
     r"The source holds label names where `labels` lists numbers"),
    ("empty_after_normalisation", None, _blank_texts,
     r"dataset tweets: no rows left after normalisation \(240 read, 240 with an empty text\)"),
    ("wheel_hash_mismatch", lambda c: c["wheels"]["kr-fixture-data"].update(sha256="0" * 64), None,
     r"wheel kr-fixture-data==0.1.0 \(kr_fixture_data-0.1.0-py3-none-any.whl\): sha256 mismatch: config pins 0{64}"),
]


@pytest.mark.parametrize("case, edit_config, edit_files, message", CONFIG_CASES + DATA_CASES,
                         ids=[c[0] for c in CONFIG_CASES + DATA_CASES])
def test_bad_input_stops_the_workflow_early(workflow, case, edit_config, edit_files, message):
    config = _config(workflow)
    if edit_config:
        edit_config(config)
    if edit_files:
        _rewrite_tweets(workflow, edit_files)
    (workflow / "bad.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(workflow, "--cores", "1", "--configfile", "bad.yaml", check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-3000:]
    assert re.search(message, output), f"{case}: expected /{message}/ in:\n{output[-3000:]}"
    # no finetuning, flattening or anything later started
    assert not (workflow / "results").exists(), sorted(map(str, (workflow / "results").rglob("*")))
    leftovers = [p for p in (workflow / "resources").rglob("*") if ".partial" in p.name] if (workflow / "resources").exists() else []
    assert not leftovers
    if any(case == c[0] for c in CONFIG_CASES):
        assert not (workflow / "resources").exists() and not (workflow / "logs").exists()
    elif case == "wheel_hash_mismatch":
        assert not (workflow / "resources/wheels").exists() or not list((workflow / "resources/wheels").iterdir())
    else:
        assert not (workflow / "resources/datasets/tweets").exists() or not list((workflow / "resources/datasets/tweets").iterdir())


def test_a_target_no_rule_makes_is_named(workflow):
    """Unknown names, and names that would nest a folder (wildcards match one path component only)."""
    for target in ("results/weights/nosuch-s0.npy", "results/weights/a/tweets-s0.npy",
                   "resources/datasets/tweets/x/meta.json", "resources/wheels/a/b.whl",
                   "results/centroid/runs/a/tweets-from-centroid-s0/metrics.json"):
        proc = snakemake(workflow, target, "-n", "--configfile", TINY, check=False)
        assert proc.returncode != 0
        assert f"No rule to produce {target}" in proc.stdout + proc.stderr, target


# ----------------------------------------------------------------------------- artifacts between stages

def module(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def flattened(tmp_path_factory, tiny_bert):
    """The tiny base model flattened: its manifest, pretrained vector and sidecar."""
    root = tmp_path_factory.mktemp("artifacts")
    spec = {"name": "tiny_bert", "source": {"type": "local", "path": str(tiny_bert)}}
    proc = module("workflow_scripts.sources", "model", "--spec", json.dumps(spec), "--input", str(tiny_bert),
                  "--out-dir", str(root / "base"), cwd=root)
    assert proc.returncode == 0, proc.stderr
    proc = module("workflow_scripts.weights", "pretrained", "--base-dir", str(root / "base"),
                  "--manifest", str(root / "manifest.json"), "--out", str(root / "pretrained.npy"), cwd=root)
    assert proc.returncode == 0, proc.stderr
    return root


def _expect_refusal(proc: subprocess.CompletedProcess, message: str, *absent: Path) -> None:
    assert proc.returncode == 2, proc.stderr[-3000:]  # run_cli: an InputError is one line and exit 2
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert re.search(message, proc.stderr), proc.stderr[-3000:]
    for path in absent:
        assert not path.exists(), path
        assert not list(path.parent.glob(f".{path.name}.*.partial")), path


def test_corrupted_safetensors_among_the_inputs(flattened, tiny_bert, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_bert, model)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    out = tmp_path / "vec.npy"
    proc = module("workflow_scripts.weights", "model", "--model-dir", str(model), "--manifest",
                  str(flattened / "manifest.json"), "--out", str(out), "--model-id", "m-s0", cwd=tmp_path)
    _expect_refusal(proc, r"model\.safetensors: not a readable safetensors file", out, out.with_suffix(".json"))


def test_base_model_architecture_differs_from_the_manifest(flattened, tiny_bert, tmp_path):
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(tiny_bert)
    config.num_hidden_layers = 1
    AutoModel.from_config(config).save_pretrained(tmp_path / "model", safe_serialization=True)
    out = tmp_path / "vec.npy"
    proc = module("workflow_scripts.weights", "model", "--model-dir", str(tmp_path / "model"), "--manifest",
                  str(flattened / "manifest.json"), "--out", str(out), "--model-id", "m-s0", cwd=tmp_path)
    _expect_refusal(proc, r"body does not match the manifest of base model", out)


def test_vectors_of_different_lengths_in_one_distance_job(flattened, tmp_path):
    from workflow_scripts.weights import save_vector

    pretrained = np.load(flattened / "pretrained.npy")
    rng = np.random.default_rng(0)
    for name, vector in (("a-s0", pretrained + rng.normal(size=pretrained.size).astype(np.float32)),
                         ("b-s0", pretrained[:-3].copy())):
        save_vector(tmp_path / f"{name}.npy", vector, {"model_id": name, "dataset": name[0], "task": "t", "seed": 0})
    out = tmp_path / "block.parquet"
    proc = module("workflow_scripts.geometry", "block", "--models", str(tmp_path / "a-s0.json"), str(tmp_path / "b-s0.json"),
                  "--pretrained", str(flattened / "pretrained.json"), "--out", str(out), cwd=tmp_path)
    _expect_refusal(proc, r"vectors of different lengths cannot be compared", out)


def test_truncated_vector_file(flattened, tmp_path):
    vector = tmp_path / "pretrained.npy"
    shutil.copy(flattened / "pretrained.npy", vector)
    shutil.copy(flattened / "pretrained.json", tmp_path / "pretrained.json")
    vector.write_bytes(vector.read_bytes()[:-100])
    out = tmp_path / "block.parquet"
    proc = module("workflow_scripts.geometry", "block", "--models", str(tmp_path / "pretrained.json"),
                  "--pretrained", str(tmp_path / "pretrained.json"), "--out", str(out), cwd=tmp_path)
    _expect_refusal(proc, r"pretrained\.npy: .*its header promises", out)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_gpu_requested_where_there_is_none(tiny_bert, tmp_path):
    out = tmp_path / "run"
    proc = module("workflow_scripts.finetune", "--base-dir", str(tiny_bert), "--dataset-dir", str(tmp_path / "nosuch"),
                  "--seed", "0", "--settings", json.dumps({"device": "cuda"}), "--out-dir", str(out), cwd=tmp_path)
    # refused before the dataset is even read (it does not exist here)
    _expect_refusal(proc, r"device 'cuda' was requested \(finetune.device\) but torch sees no CUDA GPU", out)
