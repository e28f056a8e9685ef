"""Leave-one-out centroids, BitFit / few-shot finetuning, the comparison table and the findings rules."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from workflow_scripts import centroid, findings, sources
from workflow_scripts.finetune import apply_method, finetune
from workflow_scripts.io import InputError
from workflow_scripts.models import load_classifier
from workflow_scripts.weights import build_manifest, flatten_model, flatten_safetensors, save_vector


def test_mean_is_the_direct_mean_and_refuses_mixed_lengths(tmp_path):
    rng = np.random.default_rng(0)
    vectors = [rng.standard_normal(1003).astype(np.float32) for _ in range(5)]
    paths = []
    for i, v in enumerate(vectors):
        save_vector(tmp_path / f"m{i}.npy", v)
        paths.append(tmp_path / f"m{i}.npy")
    got = centroid.mean_vector(paths, chunk=100)
    direct = np.stack(vectors).astype(np.float64).mean(0)
    np.testing.assert_allclose(got, direct, rtol=0, atol=1e-7)
    save_vector(tmp_path / "short.npy", vectors[0][:-1])
    with pytest.raises(InputError, match="short.npy: vector length 1,002 differs"):
        centroid.mean_vector(paths + [tmp_path / "short.npy"])


def test_leave_one_out_leaves_the_target_out():
    models = [{"model_id": f"{d}-s{s}", "dataset": d} for d in ("a", "b", "c") for s in (0, 1)]
    assert centroid.leave_one_out(models, "b") == ["a-s0", "a-s1", "c-s0", "c-s1"]
    with pytest.raises(InputError):
        centroid.leave_one_out(models[:2], "a")


def test_saved_centroid_loads_as_a_model_with_the_mean_body(tmp_path, tiny_bert):
    model = load_classifier(tiny_bert, 2)
    manifest = build_manifest(model, "tiny_bert", "0" * 64)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    base = flatten_model(model, manifest)
    save_vector(tmp_path / "pretrained.npy", base)
    rng = np.random.default_rng(1)
    members = []
    for i, dataset in enumerate(("x", "x", "y")):
        vector = base + rng.normal(scale=0.01, size=base.shape).astype(np.float32)
        save_vector(tmp_path / f"{dataset}-s{i}.npy", vector, {"model_id": f"{dataset}-s{i}", "dataset": dataset})
        members.append(tmp_path / f"{dataset}-s{i}.npy")
    info = centroid.make_centroid("z", members, tmp_path / "manifest.json", tiny_bert, tmp_path / "pretrained.npy",
                                  tmp_path / "c")
    assert info["members"] == ["x-s0", "x-s1", "y-s2"] and info["model_id"] == "centroid-loo-z"
    expected = np.mean([np.load(p).astype(np.float64) for p in members], axis=0)
    body = flatten_safetensors(tmp_path / "c" / "model.safetensors", manifest)
    np.testing.assert_allclose(body, expected, rtol=0, atol=1e-7)
    loaded = load_classifier(tmp_path / "c", 3)  # a fresh head of any size on the centroid body
    from safetensors import safe_open

    with safe_open(tmp_path / "c" / "model.safetensors", "np") as handle:
        assert handle.metadata() == {"format": "pt"}  # a second key would make the bytes vary between runs
    np.testing.assert_array_equal(flatten_model(loaded, manifest), body)
    with pytest.raises(InputError, match="its own models must be left out"):
        centroid.make_centroid("x", members, tmp_path / "manifest.json", tiny_bert, tmp_path / "pretrained.npy",
                               tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_bitfit_trains_only_biases_and_the_head(tiny_bert):
    model = load_classifier(tiny_bert, 3)
    n = apply_method(model, "bitfit")
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(name.endswith(".bias") or not name.startswith("bert.") for name in trainable)
    assert {"classifier.weight", "classifier.bias"} <= trainable
    assert n == sum(p.numel() for name, p in model.named_parameters() if name in trainable)
    assert apply_method(model, "full") == sum(p.numel() for p in model.parameters())
    with pytest.raises(InputError, match="method 'lora'"):
        apply_method(model, "lora")


def test_bitfit_few_shot_run_from_a_centroid_folder(tmp_path, tiny_bert):
    data = tmp_path / "data"
    sources.prepare_dataset({"name": "tweets", "task": "sentiment", "labels": ["negative", "positive"],
                             "split": {"seed": 0, "validation_fraction": 0.2, "test_fraction": 0.2},
                             "source": {"type": "local", "path": str(Path(__file__).parent / "data/tiny/tweets.csv"),
                                        "columns": {"text": "tweet", "label": "polarity"}}}, [], data)
    model = load_classifier(tiny_bert, 2)
    manifest = build_manifest(model, "tiny_bert", "0" * 64)
    body = flatten_model(model, manifest)
    centroid.save_body(body, manifest, tiny_bert, tmp_path / "start", {"members": []})
    settings = {"learning_rate": 1e-2, "steps": 3, "batch_size": 4, "max_length": 32, "method": "bitfit",
                "train_examples": 10}
    m = finetune(tmp_path / "start", data, 0, settings, tmp_path / "run", tokenizer_dir=tiny_bert,
                 save_weights=False, init="centroid")
    assert m["model_id"] == "tweets-from-centroid-s0" and m["init"] == "centroid"
    assert m["train_examples"] == 10 and m["trainable_parameters"] < sum(p.numel() for p in model.parameters()) / 10
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["metrics.json", "train_log.parquet"]
    # the same run from the pretrained folder starts from the same body: same result
    p = finetune(tiny_bert, data, 0, settings, tmp_path / "run2", save_weights=False, init="pretrained")
    assert p["test"] == m["test"]


def _metrics(target, init, seed, acc):
    return {"dataset": target, "task": "t", "init": init, "seed": seed, "model_id": f"{target}-from-{init}-s{seed}",
            "settings": {"method": "bitfit", "train_examples": None}, "train_examples": 100, "steps": 10,
            "test": {"accuracy": acc, "loss": 1 - acc, "majority_accuracy": 0.5},
            "validation": {"accuracy": acc}}


def test_comparison_outcomes(tmp_path):
    runs = {("win", "pretrained"): [0.60, 0.62], ("win", "centroid"): [0.70, 0.71],
            ("tie", "pretrained"): [0.60, 0.70], ("tie", "centroid"): [0.66, 0.66],
            ("loss", "pretrained"): [0.80, 0.80], ("loss", "centroid"): [0.70, 0.71]}
    files = []
    for (target, init), accs in runs.items():
        for seed, acc in enumerate(accs):
            path = tmp_path / f"{target}-{init}-{seed}.json"
            path.write_text(json.dumps(_metrics(target, init, seed, acc)))
            files.append(path)
    table = centroid.comparison_table(files)
    assert len(table) == 12 and set(table["init"]) == {"pretrained", "centroid"}
    summary = centroid.summarise_targets(table).set_index("target")
    assert summary.loc["win", "outcome"] == "win" and summary.loc["win", "gain"] == pytest.approx(0.095)
    assert summary.loc["tie", "outcome"] == "tie"  # +0.01 within a spread of about 0.05
    assert summary.loc["loss", "outcome"] == "loss"
    assert not summary["pretrained_at_majority"].any()
    totals = centroid.totals(summary.reset_index())
    assert (totals["wins"], totals["ties"], totals["losses"], totals["centroid_better"]) == (1, 1, 1, 2)
    assert "Centroid better on 2 of 3 targets" in centroid.report_markdown(table, summary.reset_index())


def test_findings_rules_turn_numbers_into_verdicts():
    cos = {"same_dataset": 0.2, "same_task": 0.1, "other_task": 0.0}
    assert findings.rule_same_dataset(cos, 0.8) and not findings.rule_same_dataset(cos, 0.3)
    assert not findings.rule_same_dataset({**cos, "same_task": 0.3}, 0.8)
    assert findings.rule_same_task(cos, 0.9) and not findings.rule_same_task({**cos, "other_task": 0.15}, 0.9)
    assert findings.rule_clustering(0.7, 0.5) and not findings.rule_clustering(0.7, 0.4)
    assert findings.rule_interior(-0.01) and not findings.rule_interior(-0.05)
    assert findings.rule_extrapolation(-0.05) and not findings.rule_extrapolation(-0.01)
    assert findings.rule_beats(0.5) and not findings.rule_beats(0.49)
    assert findings.rule_centroid(11, 12, 0.0306) and not findings.rule_centroid(6, 12, 0.01)
    assert not findings.rule_centroid(8, 12, -0.001)


def _fixture_tables(folder: Path, gain: float) -> dict:
    rows = []
    for rel, value in (("same_dataset", 0.3), ("same_task", 0.1), ("other_task", 0.0)):
        rows.append({"section": "relation", "metric": "cosine", "group": rel, "statistic": "mean", "value": value})
    for group, value in (("dataset", 0.9), ("task", 1.0)):
        rows.append({"section": "nearest_neighbour", "metric": "cosine", "group": group, "statistic": "agreement",
                     "value": value})
        for stat in ("adjusted_rand", "purity"):
            rows.append({"section": "clustering", "metric": "cosine", "group": group, "statistic": stat, "value": value})
    paths = {"geometry": folder / "g.parquet", "lines": folder / "l.parquet", "region": folder / "r.parquet",
             "centroid": folder / "c.parquet", "comparison": folder / "cmp.parquet", "models": folder / "m.parquet",
             "manifest": folder / "manifest.json"}
    pd.DataFrame(rows).to_parquet(paths["geometry"])
    pd.DataFrame({"pair": ["p", "q"], "relation": ["same_task", "other_task"], "head": "probe",
                  "inside_minus_ends_min": [0.01, 0.03], "far_minus_near_end": [-0.1, -0.06]}).to_parquet(paths["lines"])
    pd.DataFrame({"group": "g", "versus": ["member", "extrapolated", "other"],
                  "hull_beats": [0.6, 0.9, 1.0]}).to_parquet(paths["region"])
    pd.DataFrame({"target": ["a", "b"], "gain": [gain, gain / 2], "outcome": ["win", "tie"]}).to_parquet(paths["centroid"])
    pd.DataFrame({"method": ["bitfit"], "few_shot": [64.0], "train_examples": [64]}).to_parquet(paths["comparison"])
    pd.DataFrame({"dataset": ["a", "b"], "task": ["t", "t"], "seed": [0, 0], "steps": [50, 50]}).to_parquet(paths["models"])
    paths["manifest"].write_text(json.dumps({"base_model": "minilm", "model_type": "bert", "total": 100}))
    return paths


def test_findings_report_builds_from_fixture_tables(tmp_path):
    paths = _fixture_tables(tmp_path, gain=0.02)
    result, text = findings.build(**{k: v for k, v in paths.items()})
    verdicts = {c["id"]: c["holds"] for c in result["claims"]}
    assert verdicts == {"same_dataset_cluster": True, "same_task_cluster": True, "clustering": True, "interior": True,
                        "extrapolation": True, "region_vs_members": True, "region_vs_other_datasets": True,
                        "centroid": True}
    assert "8 of 8 claims hold" in text and "not the paper's roberta-base" in text
    assert "Centroid comparison: bitfit, 64-shot" in text
    assert "11 of 12 targets, +3.06" in text and "better on 2 of 2 targets" in text
    metrics = findings.flat_metrics(result)
    assert metrics["claims_holding"] == 8 and metrics["centroid"]["holds"] == 1
    assert metrics["same_dataset_cluster"]["cosine_same_dataset"] == 0.3
    paths = _fixture_tables(tmp_path, gain=-0.02)
    result, text = findings.build(**paths)
    assert [c["holds"] for c in result["claims"] if c["id"] == "centroid"] == [False]
    assert "**does not hold**" in text and "7 of 8 claims hold" in text
