"""Finetuning on the tiny model: deterministic on the CPU, sane metrics, complete outputs."""
import json
from pathlib import Path

import pandas as pd
import pytest

from workflow_scripts import sources
from workflow_scripts.finetune import finetune
from workflow_scripts.io import InputError

SETTINGS = {"learning_rate": 1e-3, "steps": 6, "batch_size": 8, "max_length": 32, "log_every": 2, "eval_every": 3}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, tiny_bert):
    out = tmp_path_factory.mktemp("tweets")
    spec = {"name": "tweets", "task": "sentiment", "labels": ["negative", "positive"],
            "split": {"seed": 0, "validation_fraction": 0.2, "test_fraction": 0.2, "max_train": 80},
            "source": {"type": "local", "path": str(Path(__file__).parent / "data/tiny/tweets.csv"), "columns": {"text": "tweet", "label": "polarity"}}}
    sources.prepare_dataset(spec, [], out)
    return out


def test_two_cpu_runs_give_the_same_weights_bit_for_bit(tiny_bert, dataset, tmp_path):
    a = finetune(tiny_bert, dataset, 0, SETTINGS, tmp_path / "a")
    b = finetune(tiny_bert, dataset, 0, SETTINGS, tmp_path / "b")
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
    assert a["test"] == b["test"]
    c = finetune(tiny_bert, dataset, 1, SETTINGS, tmp_path / "c")
    assert (tmp_path / "c" / "model.safetensors").read_bytes() != (tmp_path / "a" / "model.safetensors").read_bytes()
    assert c["seed"] == 1


def test_outputs_and_metrics(tiny_bert, dataset, tmp_path):
    metrics = finetune(tiny_bert, dataset, 0, SETTINGS, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "metrics.json", "model.safetensors", "train_log.parquet"]
    assert json.loads((tmp_path / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    for split in ("validation", "test"):
        assert 0 <= metrics[split]["accuracy"] <= 1 and metrics[split]["loss"] > 0
        assert 0 <= metrics[split]["majority_accuracy"] <= 1
    log = pd.read_parquet(tmp_path / "train_log.parquet")
    assert log["step"].tolist() == list(range(1, 7))
    assert log["val_accuracy"].notna().tolist() == [False, False, True, False, False, True]
    assert (log["learning_rate"].iloc[-1]) == 0.0
    assert json.loads((tmp_path / "config.json").read_text())["id2label"] == {"0": "negative", "1": "positive"}


def test_unknown_setting_and_missing_gpu_are_refused(tiny_bert, dataset, tmp_path):
    with pytest.raises(InputError, match=r"unknown key\(s\) \['lr'\]"):
        finetune(tiny_bert, dataset, 0, {"lr": 1}, tmp_path)
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="device 'cuda' was requested .* no CUDA GPU"):
            finetune(tiny_bert, dataset, 0, {"device": "cuda"}, tmp_path)
    assert not list(tmp_path.iterdir())


def test_parallel_jobs_claim_different_gpus(tmp_path):
    import subprocess
    import sys

    from workflow_scripts.devices import claim_gpu

    held = claim_gpu(2, tmp_path)  # this process holds one of two
    other = subprocess.run([sys.executable, "-c", f"from workflow_scripts.devices import claim_gpu; "
                            f"print(claim_gpu(2, {str(tmp_path)!r}))"], capture_output=True, text=True, check=True)
    assert {held, int(other.stdout)} == {0, 1}
    assert held == 0
    with pytest.raises(InputError, match="all 1 GPUs of this machine are held"):
        claim_gpu(1, tmp_path)  # a second claim, even from the same process, does not get GPU 0
