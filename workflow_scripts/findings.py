"""The findings report (experiment E4): each claim of the paper, its figure, the figure measured here,
and whether it holds by a rule stated beside it.

CLI:
  python -m workflow_scripts.findings --geometry SUMMARY.parquet --lines LINE_SUMMARY.parquet
         --region REGION_SUMMARY.parquet --centroid CENTROID_SUMMARY.parquet --comparison C.parquet
         --models METRICS.parquet --manifest MANIFEST.json --out-md F.md --out-json F.json
         --out-metrics METRICS.json --out-centroid-csv CENTROID.csv
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Mapping

import pandas as pd

from .io import InputError, atomic_path, read_json, run_cli, write_json

TOLERANCE = 0.02  # accuracy: about 3 of 160 test examples, below which a difference is noise here
MIN_AGREEMENT = 0.5
MIN_ARI = 0.5


def _read(path, what: str) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as err:  # noqa: BLE001 - any unreadable table is the same problem for the user
        raise InputError(f"{path}: unreadable {what} table ({err})") from None


def _value(geometry: pd.DataFrame, section: str, metric: str, group: str, statistic: str) -> float:
    row = geometry[(geometry["section"] == section) & (geometry["metric"] == metric) & (geometry["group"] == group)
                   & (geometry["statistic"] == statistic)]
    if row.empty:
        raise InputError(f"geometry summary: no {section}/{metric}/{group}/{statistic} row")
    return float(row["value"].iloc[0])


# ---- the rules: numbers in, holds / does not hold out ---------------------------------------------

def rule_same_dataset(cos: Mapping[str, float], nn_dataset: float) -> bool:
    return cos["same_dataset"] > cos["same_task"] and cos["same_dataset"] > cos["other_task"] \
        and nn_dataset >= MIN_AGREEMENT


def rule_same_task(cos: Mapping[str, float], nn_task: float) -> bool:
    return cos["same_dataset"] > cos["same_task"] > cos["other_task"] and nn_task >= MIN_AGREEMENT


def rule_clustering(ari_dataset: float, ari_task: float) -> bool:
    return ari_dataset >= MIN_ARI and ari_task >= MIN_ARI


def rule_interior(dip: float) -> bool:
    return dip >= -TOLERANCE


def rule_extrapolation(drop: float) -> bool:
    return drop < -TOLERANCE


def rule_beats(share: float) -> bool:
    return share >= 0.5


def rule_centroid(better: int, targets: int, mean_gain: float) -> bool:
    return better > targets / 2 and mean_gain > 0


# ---- building the rows -------------------------------------------------------------------------

def claims(geometry: pd.DataFrame, lines: pd.DataFrame, region: pd.DataFrame, centroid: pd.DataFrame) -> list[dict]:
    cos = {r: _value(geometry, "relation", "cosine", r, "mean") for r in ("same_dataset", "same_task", "other_task")}
    nn_d = _value(geometry, "nearest_neighbour", "cosine", "dataset", "agreement")
    nn_t = _value(geometry, "nearest_neighbour", "cosine", "task", "agreement")
    ari_d = _value(geometry, "clustering", "cosine", "dataset", "adjusted_rand")
    ari_t = _value(geometry, "clustering", "cosine", "task", "adjusted_rand")
    pur_d = _value(geometry, "clustering", "cosine", "dataset", "purity")
    pur_t = _value(geometry, "clustering", "cosine", "task", "purity")
    probe = lines[lines["head"] == "probe"]
    within = probe[probe["relation"].isin(["same_dataset", "same_task"])]
    dip = float(within["inside_minus_ends_min"].mean())
    drop = float(probe["far_minus_near_end"].mean())
    versus = {v: float(region.loc[region["versus"] == v, "hull_beats"].mean()) for v in ("member", "other")}
    better = int((centroid["gain"] > 0).sum())
    outcomes = centroid["outcome"].value_counts()
    mean_gain = float(centroid["gain"].mean())
    rows = [
        {"id": "same_dataset_cluster", "claim": "Models finetuned on the same dataset form a tight cluster",
         "paper": "same-dataset models are the closest pairs (qualitative)",
         "measured": f"mean task-vector cosine: same dataset {cos['same_dataset']:.3f}, same task "
                     f"{cos['same_task']:.3f}, other task {cos['other_task']:.3f}; nearest neighbour of the same "
                     f"dataset {nn_d:.2f}",
         "rule": f"same-dataset cosine above both other relations and nearest-neighbour agreement >= {MIN_AGREEMENT}",
         "holds": rule_same_dataset(cos, nn_d), "figure": "../geometry/figures/similarity_heatmap.png",
         "numbers": {"cosine": cos, "nearest_neighbour_dataset": nn_d}},
        {"id": "same_task_cluster", "claim": "Models of the same task form a looser cluster",
         "paper": "same-task models are closer than models of other tasks, less close than same-dataset ones "
                  "(qualitative)",
         "measured": f"cosine same dataset {cos['same_dataset']:.3f} > same task {cos['same_task']:.3f} > other task "
                     f"{cos['other_task']:.3f}; nearest neighbour of the same task {nn_t:.2f}",
         "rule": f"same dataset > same task > other task in mean cosine, and task nearest-neighbour agreement >= "
                 f"{MIN_AGREEMENT}",
         "holds": rule_same_task(cos, nn_t), "figure": "../geometry/figures/relations_boxplot.png",
         "numbers": {"cosine": cos, "nearest_neighbour_task": nn_t}},
        {"id": "clustering", "claim": "Clustering the weights recovers datasets and tasks",
         "paper": "clusters align with datasets and tasks (qualitative)",
         "measured": f"spectral clustering: datasets ARI {ari_d:.2f} (purity {pur_d:.2f}), tasks ARI {ari_t:.2f} "
                     f"(purity {pur_t:.2f})",
         "rule": f"adjusted Rand index >= {MIN_ARI} for both datasets and tasks",
         "holds": rule_clustering(ari_d, ari_t), "figure": "../geometry/figures/tsne.png",
         "numbers": {"ari_dataset": ari_d, "ari_task": ari_t, "purity_dataset": pur_d, "purity_task": pur_t}},
        {"id": "interior", "claim": "The region between models performs as well as its ends",
         "paper": "interpolated models perform as well as or better than the finetuned ends (qualitative)",
         "measured": f"lowest accuracy inside the segment minus the weaker end: {dip:+.3f} (mean over "
                     f"{len(within)} same-dataset and same-task lines x eval datasets)",
         "rule": f"mean (inside minimum - weaker end) >= -{TOLERANCE}",
         "holds": rule_interior(dip), "figure": "../interpolation/figures/lines_accuracy.png",
         "numbers": {"inside_minus_ends_min": dip, "lines": int(len(within))}},
        {"id": "extrapolation", "claim": "Extrapolating out of the region degrades performance",
         "paper": "accuracy drops past the finetuned ends (qualitative)",
         "measured": f"farthest extrapolation minus the nearer end: {drop:+.3f} (mean over {len(probe)} lines x "
                     "eval datasets)",
         "rule": f"mean (farthest point - nearer end) < -{TOLERANCE}",
         "holds": rule_extrapolation(drop), "figure": "../interpolation/figures/lines_accuracy.png",
         "numbers": {"far_minus_near_end": drop, "lines": int(len(probe))}},
        {"id": "region_vs_members", "claim": "Samples of the region do as well as the group's own models",
         "paper": "region samples often outperform the finetuned models (qualitative)",
         "measured": f"hull samples beat the group's models in {versus['member']:.2f} of comparisons",
         "rule": "hull samples win at least half of the pairwise comparisons (ties count half)",
         "holds": rule_beats(versus["member"]), "figure": "../interpolation/figures/region.png",
         "numbers": {"hull_beats_members": versus["member"]}},
        {"id": "region_vs_other_datasets", "claim": "Samples of the region beat models of other datasets",
         "paper": "region samples outperform models finetuned on other datasets (qualitative)",
         "measured": f"hull samples beat other datasets' models in {versus['other']:.2f} of comparisons",
         "rule": "hull samples win at least half of the pairwise comparisons (ties count half)",
         "holds": rule_beats(versus["other"]), "figure": "../interpolation/figures/region.png",
         "numbers": {"hull_beats_other": versus["other"]}},
        {"id": "centroid", "claim": "The centroid is a better starting point than the pretrained model",
         "paper": "better on 11 of 12 targets, +3.06 mean accuracy (leave-one-out, BitFit)",
         "measured": f"better on {better} of {len(centroid)} targets (wins / ties / losses "
                     f"{int(outcomes.get('win', 0))} / {int(outcomes.get('tie', 0))} / {int(outcomes.get('loss', 0))}), "
                     f"{100 * mean_gain:+.2f} mean accuracy",
         "rule": "centroid better on more than half of the targets and mean gain > 0",
         "holds": rule_centroid(better, len(centroid), mean_gain), "figure": "../centroid/figures/gain.png",
         "numbers": {"better": better, "targets": int(len(centroid)), "mean_gain": mean_gain,
                     "wins": int(outcomes.get("win", 0)), "ties": int(outcomes.get("tie", 0)),
                     "losses": int(outcomes.get("loss", 0))}},
    ]
    for row in rows:
        row["holds"] = bool(row["holds"])
    return rows


def header(models: pd.DataFrame, manifest: Mapping, comparison: pd.DataFrame) -> dict:
    from .centroid import setting

    datasets = models.drop_duplicates("dataset")[["dataset", "task"]].sort_values(["task", "dataset"])
    caveats = []
    if manifest.get("model_type") != "roberta":
        caveats.append(f"The base model is {manifest['base_model']} ({manifest.get('model_type')}, "
                       f"{manifest['total']:,} body parameters), not the paper's roberta-base; a sentence-embedding "
                       "model such as all-MiniLM-L6-v2 is not an MLM checkpoint.")
    steps = sorted(set(models["steps"]))
    caveats.append(f"Finetuning ran {', '.join(map(str, steps))} steps per model; the paper trains to convergence.")
    caveats.append(f"Accuracy differences below {TOLERANCE} are treated as noise (the generalized evaluation scores "
                   "a capped test sample).")
    return {"base_model": manifest["base_model"], "model_type": manifest.get("model_type"),
            "body_parameters": int(manifest["total"]), "models": int(len(models)),
            "seeds": sorted(int(s) for s in set(models["seed"])),
            "datasets": {r.dataset: r.task for r in datasets.itertuples()},
            "centroid_setting": setting(comparison), "caveats": caveats}


def report_markdown(head: Mapping, rows: list[dict]) -> str:
    tasks: dict[str, list[str]] = {}
    for dataset, task in head["datasets"].items():
        tasks.setdefault(task, []).append(dataset)
    out = ["# Findings: does knowledge form a region in weight space on these models?", "",
           f"Base model **{head['base_model']}** ({head['model_type']}, {head['body_parameters']:,} body parameters); "
           f"{head['models']} finetuned models: seeds {head['seeds']} on "
           + "; ".join(f"{t}: {', '.join(ds)}" for t, ds in sorted(tasks.items()))
           + f". Centroid comparison: {head['centroid_setting']}.", "",
           "Caveats:", *[f"- {c}" for c in head["caveats"]], "",
           "| claim | paper | measured here | rule | verdict | figure |", "|---|---|---|---|---|---|"]
    for r in rows:
        verdict = "**holds**" if r["holds"] else "**does not hold**"
        out.append(f"| {r['claim']} | {r['paper']} | {r['measured']} | {r['rule']} | {verdict} | "
                   f"[{Path(r['figure']).name}]({r['figure']}) |")
    held = sum(r["holds"] for r in rows)
    out += ["", f"{held} of {len(rows)} claims hold on these models."]
    return "\n".join(out) + "\n"


def flat_metrics(findings: Mapping) -> dict:
    """Numbers only, one block per claim (holds as 1 / 0): what `dvc metrics show / diff` compares."""
    out = {}
    for c in findings["claims"]:
        block = {"holds": int(c["holds"])}
        for key, value in c["numbers"].items():
            if isinstance(value, Mapping):
                block.update({f"{key}_{k}": float(v) for k, v in value.items()})
            else:
                block[key] = float(value) if isinstance(value, float) else int(value)
        out[c["id"]] = block
    out["claims_holding"] = sum(int(c["holds"]) for c in findings["claims"])
    return out


def build(geometry, lines, region, centroid, comparison, models, manifest) -> tuple[dict, str]:
    rows = claims(_read(geometry, "geometry summary"), _read(lines, "line summary"),
                  _read(region, "region summary"), _read(centroid, "centroid summary"))
    head = header(_read(models, "model metrics"), read_json(manifest), _read(comparison, "centroid comparison"))
    return {"header": head, "claims": rows}, report_markdown(head, rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ("--geometry", "--lines", "--region", "--centroid", "--comparison", "--models", "--manifest",
                 "--out-md", "--out-json", "--out-metrics", "--out-centroid-csv"):
        parser.add_argument(name, required=True)
    args = parser.parse_args(argv)
    findings, text = build(args.geometry, args.lines, args.region, args.centroid, args.comparison, args.models,
                           args.manifest)
    write_json(args.out_json, findings)
    write_json(args.out_metrics, flat_metrics(findings))
    # the per-target comparison as CSV, for `dvc plots`
    table = _read(args.centroid, "centroid summary")[["target", "task", "pretrained_accuracy", "centroid_accuracy",
                                                        "gain", "outcome"]]
    with atomic_path(args.out_centroid_csv) as part:
        table.to_csv(part, index=False, float_format="%.6f")
    with atomic_path(args.out_md) as part:
        part.write_text(text)
    print(text, file=sys.stderr)


if __name__ == "__main__":
    run_cli(main)
