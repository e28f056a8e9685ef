"""Interpolation, region sampling and the generalized evaluation (fresh linear head)."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from workflow_scripts import sources
from workflow_scripts.evaluation import evaluate
from workflow_scripts.finetune import finetune
from workflow_scripts.interpolation import (Bodies, beats, combine, dirichlet_weights, evaluate_points,
                                            extrapolated_weights, line_points, line_summary, region_summary,
                                            resolve_groups, select_pairs)
from workflow_scripts.io import InputError, read_json
from workflow_scripts.models import load_classifier
from workflow_scripts.evaluation import encode_inputs, read_inputs, write_inputs
from workflow_scripts.probe import BodyEvaluator, fit_probe
from workflow_scripts.weights import build_manifest, flatten_safetensors, save_vector

MODELS = [{"model_id": f"{d}-s{s}", "dataset": d, "task": t, "seed": s}
          for d, t in (("a", "x"), ("b", "x"), ("c", "y"), ("d", "y"), ("e", "z")) for s in (0, 1, 2)]


def test_line_ends_are_the_endpoint_bodies_bit_for_bit(tmp_path):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(1001).astype(np.float32), rng.standard_normal(1001).astype(np.float32)
    save_vector(tmp_path / "a.npy", a)
    save_vector(tmp_path / "b.npy", b)
    paths = [tmp_path / "a.npy", tmp_path / "b.npy"]
    for alpha, expected in ((0.0, a), (1.0, b)):
        w = [1 - alpha, alpha]
        assert combine(paths, w, chunk=97).tobytes() == expected.tobytes()
    mid = combine(paths, [0.25, 0.75], chunk=97)
    np.testing.assert_allclose(mid, 0.25 * a.astype(np.float64) + 0.75 * b, rtol=0, atol=1e-6)
    far = combine(paths, [-1.0, 2.0])
    np.testing.assert_allclose(far, 2 * b.astype(np.float64) - a, rtol=0, atol=1e-5)


def test_mixed_vector_lengths_are_refused(tmp_path):
    save_vector(tmp_path / "a.npy", np.zeros(10, np.float32))
    save_vector(tmp_path / "b.npy", np.zeros(11, np.float32))
    with pytest.raises(InputError, match=r"b.npy: vector length 11 differs"):
        combine([tmp_path / "a.npy", tmp_path / "b.npy"], [0.5, 0.5])


def test_dirichlet_samples_lie_in_the_hull_and_extrapolated_points_outside():
    w = dirichlet_weights(5, 200, 1.0, np.random.default_rng(0))
    assert w.shape == (200, 5)
    assert (w >= 0).all() and np.allclose(w.sum(1), 1.0, rtol=0, atol=1e-12)
    assert np.array_equal(w, dirichlet_weights(5, 200, 1.0, np.random.default_rng(0)))
    ext = extrapolated_weights(3, 4, 1.0)
    assert np.allclose(ext.sum(1), 1.0) and ((ext < 0).any(1)).all()  # a negative weight: not in the hull
    assert ext[0].tolist() == [2.0, -0.5, -0.5] and ext[3].tolist() == [2.0, -0.5, -0.5]
    with pytest.raises(InputError):
        extrapolated_weights(1, 1, 1.0)


def test_linear_probe_separates_separable_features():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((4, 16)) * 4
    y = np.repeat(np.arange(4), 60)
    x = centres[y] + rng.standard_normal((240, 16))
    order = rng.permutation(240)
    x, y = x[order], y[order]
    result = fit_probe(x[:120], y[:120], x[120:], y[120:], num_labels=4)
    assert result["accuracy"] >= 0.98 and result["loss"] < 0.2
    noise = fit_probe(rng.standard_normal((120, 16)), y[:120], rng.standard_normal((120, 16)), y[120:], num_labels=4)
    assert noise["accuracy"] < 0.5  # the probe does not invent signal
    # a class missing from the probe's sample costs finite loss, and a one-class sample still scores
    missing = fit_probe(x[:120][y[:120] < 3], y[:120][y[:120] < 3], x[120:], y[120:], num_labels=4)
    assert np.isfinite(missing["loss"]) and missing["accuracy"] <= np.mean(y[120:] != 3)
    one = fit_probe(x[:5] * 0, np.zeros(5, int), x[120:], y[120:], num_labels=4)
    assert one["accuracy"] == pytest.approx(np.mean(y[120:] == 0))


def test_pairs_are_drawn_per_relation_deterministically_and_varied():
    pairs = select_pairs(MODELS, 2, seed=0)
    assert pairs == select_pairs(list(reversed(MODELS)), 2, seed=0)
    info = {m["model_id"]: m for m in MODELS}
    by_rel = {}
    for a, b, rel in pairs:
        by_rel.setdefault(rel, []).append((a, b))
        same_dataset = info[a]["dataset"] == info[b]["dataset"]
        same_task = info[a]["task"] == info[b]["task"]
        assert rel == ("same_dataset" if same_dataset else "same_task" if same_task else "other_task")
    assert {k: len(v) for k, v in by_rel.items()} == {"same_dataset": 2, "same_task": 2, "other_task": 2}
    # the two same-dataset pairs come from two different datasets
    assert len({info[a]["dataset"] for a, _ in by_rel["same_dataset"]}) == 2


def test_region_groups():
    groups = resolve_groups(["dataset:c", "task:x"], MODELS, n_others=3)
    assert [g.name for g in groups] == ["dataset-c", "task-x"]
    assert groups[0].members == ["c-s0", "c-s1", "c-s2"]
    assert groups[0].others == ["d-s0", "a-s0", "b-s0"]  # same task first, first seed
    assert groups[1].datasets == ["a", "b"] and len(groups[1].members) == 6
    assert [g.name for g in resolve_groups(None, MODELS, 1)] == ["dataset-a", "task-x"]
    with pytest.raises(InputError, match="names no task"):
        resolve_groups(["task:nope"], MODELS, 1)


def test_summaries_on_a_constructed_table():
    rows = []
    for alpha, acc in ((-1, 0.5), (0, 0.8), (0.5, 0.85), (1, 0.9), (2, 0.6)):
        rows.append({"pair": "p", "relation": "same_task", "eval_dataset": "a", "head": "probe", "alpha": float(alpha),
                     "accuracy": acc, "loss": 1 - acc})
    s = line_summary(pd.DataFrame(rows)).iloc[0]
    assert s["end_accuracy_min"] == 0.8 and s["inside_minus_ends_min"] == pytest.approx(0.05)
    assert s["far_minus_near_end"] == pytest.approx(((0.5 - 0.8) + (0.6 - 0.9)) / 2)
    assert beats([0.9, 0.8], [0.8]) == 0.75
    region = pd.DataFrame({"group": "g", "eval_dataset": "a", "head": "probe",
                           "kind": ["hull", "hull", "member", "extrapolated", "other"],
                           "accuracy": [0.9, 0.7, 0.8, 0.5, 0.9]})
    summary = region_summary(region).set_index("versus")["hull_beats"].to_dict()
    assert summary == {"member": 0.5, "extrapolated": 1.0, "other": 0.25}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_bert):
    """Two finetuned tiny models of one dataset, their vectors, and evaluation inputs."""
    root = tmp_path_factory.mktemp("interp")
    spec = {"name": "tweets", "task": "sentiment", "labels": ["negative", "positive"],
            "split": {"seed": 0, "validation_fraction": 0.2, "test_fraction": 0.3, "max_train": 80},
            "source": {"type": "local", "path": str(Path(__file__).parent / "data/tiny/tweets.csv"),
                       "columns": {"text": "tweet", "label": "polarity"}}}
    data = root / "data"
    sources.prepare_dataset(spec, [], data)
    manifest = build_manifest(load_classifier(tiny_bert, 2), "tiny_bert", "0" * 64)
    settings = {"learning_rate": 1e-3, "steps": 4, "batch_size": 8, "max_length": 32}
    for seed in (0, 1):
        mid = f"tweets-s{seed}"
        finetune(tiny_bert, data, seed, settings, root / "models" / mid)
        vector = flatten_safetensors(root / "models" / mid / "model.safetensors", manifest)
        save_vector(root / "weights" / f"{mid}.npy", vector, {"model_id": mid, "dataset": "tweets",
                                                             "task": "sentiment", "seed": seed})
    frame, info = encode_inputs(tiny_bert, data, 32, probe_train=40, test=30, seed=0)
    write_inputs(root / "inputs.parquet", frame, info)
    return root, manifest, data


def test_line_ends_score_what_the_endpoint_models_score(trained, tiny_bert):
    root, manifest, data = trained
    inputs = read_inputs(root / "inputs.parquet")
    assert inputs.dataset == "tweets" and inputs.num_labels == 2 and len(inputs.test) == 30
    evaluator = BodyEvaluator(tiny_bert, manifest, batch_size=7)
    bodies = Bodies(root / "weights", root / "models", evaluator.body_prefix)
    a, b = bodies.info("tweets-s0"), bodies.info("tweets-s1")
    rows = pd.DataFrame(evaluate_points(line_points(a, b, [0.0, 0.5, 1.0]), bodies, evaluator,
                                        {"tweets": inputs}))
    assert set(rows["head"]) == {"probe", "own"}  # same dataset: the heads combine too
    for alpha, model_id in ((0.0, "tweets-s0"), (1.0, "tweets-s1")):
        model = load_classifier(root / "models" / model_id, 2)
        direct = evaluate(model, inputs.test, 16, torch.device("cpu"), None, 0)
        own = rows[(rows["alpha"] == alpha) & (rows["head"] == "own")].iloc[0]
        assert own["accuracy"] == direct["accuracy"]
        assert own["loss"] == pytest.approx(direct["loss"], rel=1e-5)
        # the probe on the endpoint equals the probe on the saved model's own features
        fresh = BodyEvaluator(tiny_bert, manifest, batch_size=7)
        fresh.set_body(np.load(root / "weights" / f"{model_id}.npy"))
        probe = fresh.evaluate(inputs)[0]
        got = rows[(rows["alpha"] == alpha) & (rows["head"] == "probe")].iloc[0]
        assert (got["accuracy"], got["loss"]) == (probe["accuracy"], probe["loss"])


def test_own_head_only_where_every_member_knows_the_dataset(trained, tiny_bert):
    root, manifest, _ = trained
    bodies = Bodies(root / "weights", root / "models", "bert")
    head = bodies.own_head({"tweets-s0": 0.25, "tweets-s1": 0.75}, "tweets")
    h0, h1 = bodies.head("tweets-s0"), bodies.head("tweets-s1")
    torch.testing.assert_close(head["classifier.weight"], 0.25 * h0["classifier.weight"] + 0.75 * h1["classifier.weight"])
    assert bodies.own_head({"tweets-s0": 1.0}, "other") is None
    assert read_json(root / "weights/tweets-s0.json")["dataset"] == "tweets"
