"""Interpolation, extrapolation and region sampling between finetuned bodies (experiment E2).

Every point is an affine combination sum_i w_i theta_i of finetuned bodies (weights sum to one):
a line theta(alpha) = (1 - alpha) a + alpha b, a Dirichlet sample of a group's convex hull, or a point
pushed past one member away from the others. Each point is scored on the datasets it is compared on
with a fresh linear head (probe.py) and, where every member with non-zero weight was trained on that
dataset, with the same combination of the members' own heads.

CLI:
  python -m workflow_scripts.interpolation line --a ID --b ID --alphas A... COMMON
  python -m workflow_scripts.interpolation region --group NAME --members ID... --others ID...
         --hull-samples N --concentration C --extrapolated N --beta B --seed N COMMON
  python -m workflow_scripts.interpolation summarise --lines F... --regions F... --out-lines F
         --out-region F --out-region-summary F --out-line-summary F --report F.md
COMMON: --base-dir DIR --manifest MANIFEST.json --weights-dir DIR --models-dir DIR
        --inputs INPUTS.parquet... --settings JSON --out TABLE.parquet
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .geometry import relation
from .io import InputError, atomic_path, read_json, run_cli, write_parquet

RELATIONS = ("same_dataset", "same_task", "other_task")
KINDS = ("member", "hull", "extrapolated", "other")


# ---- weights of the points -----------------------------------------------------------------

def line_weights(alpha: float) -> np.ndarray:
    """(1 - alpha, alpha): alpha 0 is the first end, 1 the second, outside [0, 1] extrapolates."""
    return np.array([1.0 - alpha, alpha])


def dirichlet_weights(k: int, n: int, concentration: float, rng: np.random.Generator) -> np.ndarray:
    """`n` points of the convex hull of `k` models: non-negative weights that sum to one."""
    weights = rng.dirichlet(np.full(k, float(concentration)), size=n)
    return weights / weights.sum(1, keepdims=True)


def extrapolated_weights(k: int, n: int, beta: float) -> np.ndarray:
    """`n` points outside the hull: past member i, away from the mean of the others, by `beta` times
    their distance (weight 1 + beta on i, -beta / (k - 1) on each other); members taken in turn."""
    if k < 2:
        raise InputError("extrapolating a group needs at least two members")
    out = np.full((n, k), -beta / (k - 1))
    for row in range(n):
        out[row, row % k] = 1.0 + beta
    return out


def combine(paths: Sequence[str | Path], weights: Sequence[float], chunk: int = 1 << 22) -> np.ndarray:
    """sum_i w_i theta_i (the weights of a point sum to one); alpha 0 and 1 give the ends bit for bit."""
    # imported here: Snakemake imports this module to plan the DAG, and weights pulls in torch (seconds)
    from .weights import weighted_sum

    return weighted_sum(paths, weights, chunk=chunk)


# ---- choosing what to evaluate (called when the DAG is built) ---------------------------------

def select_pairs(models: Sequence[Mapping], per_relation: int, seed: int) -> list[tuple[str, str, str]]:
    """`per_relation` pairs of each relation, drawn with a seeded RNG from the sorted list of pairs,
    preferring pairs whose datasets no earlier pick of that relation used, so the picks are varied."""
    rng = np.random.default_rng(seed)
    by_relation: dict[str, list] = {r: [] for r in RELATIONS}
    for a, b in itertools.combinations(sorted(models, key=lambda m: m["model_id"]), 2):
        by_relation[relation(a, b)].append((a, b))
    chosen = []
    for rel in RELATIONS:
        pairs = [by_relation[rel][i] for i in rng.permutation(len(by_relation[rel]))]
        picked, used = [], set()
        for fresh_only in (True, False):
            for a, b in pairs:
                if len(picked) == per_relation:
                    break
                if (a, b) in picked or (fresh_only and {a["dataset"], b["dataset"]} & used):
                    continue
                picked.append((a, b))
                used |= {a["dataset"], b["dataset"]}
        chosen += [(a["model_id"], b["model_id"], rel) for a, b in picked]
    return chosen


def pair_id(a: str, b: str) -> str:
    return f"{a}--{b}"


@dataclass
class Group:
    """A region: the models of one dataset (its seeds) or of one task (its datasets)."""

    name: str
    kind: str
    datasets: list[str]
    members: list[str]
    others: list[str] = field(default_factory=list)


def resolve_groups(spec: Sequence[str] | None, models: Sequence[Mapping], n_others: int) -> list[Group]:
    """Groups named `dataset:<name>` or `task:<name>`; none given: the first dataset of the task with
    the most datasets, and that task. `others`: one model (first seed) of `n_others` datasets outside the
    group, from the same task first."""
    datasets = list(dict.fromkeys(m["dataset"] for m in models))
    task_of = {m["dataset"]: m["task"] for m in models}
    if not spec:
        counts = {t: sum(task_of[d] == t for d in datasets) for t in dict.fromkeys(task_of.values())}
        task = max(counts, key=counts.get)
        first = next(d for d in datasets if task_of[d] == task)
        spec = [f"dataset:{first}", f"task:{task}"]
    groups = []
    for entry in spec:
        kind, _, name = entry.partition(":")
        if kind == "dataset":
            group_datasets = [name] if name in task_of else []
        elif kind == "task":
            group_datasets = [d for d in datasets if task_of[d] == name]
        else:
            raise InputError(f"interpolation.region.groups: {entry!r} is not dataset:<name> or task:<name>")
        if not group_datasets:
            raise InputError(f"interpolation.region.groups: {entry!r} names no {kind} of this study "
                             f"(datasets: {datasets}; tasks: {sorted(set(task_of.values()))})")
        members = sorted(m["model_id"] for m in models if m["dataset"] in group_datasets)
        if len(members) < 2:
            raise InputError(f"interpolation.region.groups: {entry!r} has {len(members)} model; a region needs two")
        tasks = {task_of[d] for d in group_datasets}
        outside = sorted((d for d in datasets if d not in group_datasets), key=lambda d: (task_of[d] not in tasks, d))
        first_seed = {}
        for m in sorted(models, key=lambda m: (m["seed"], m["model_id"])):
            first_seed.setdefault(m["dataset"], m["model_id"])
        groups.append(Group(f"{kind}-{name}", kind, group_datasets, members,
                            [first_seed[d] for d in outside[:n_others]]))
    return groups


# ---- evaluating points -------------------------------------------------------------------------

class Bodies:
    """Finetuned models by id: sidecar info, vector path, and (lazily) the saved head."""

    def __init__(self, weights_dir, models_dir, body_prefix: str):
        self.weights_dir, self.models_dir, self.body_prefix = Path(weights_dir), Path(models_dir), body_prefix
        self._info: dict[str, dict] = {}
        self._heads: dict[str, dict] = {}

    def info(self, model_id: str) -> dict:
        if model_id not in self._info:
            self._info[model_id] = read_json(self.weights_dir / f"{model_id}.json")
        return self._info[model_id]

    def vector_path(self, model_id: str) -> Path:
        return self.weights_dir / f"{model_id}.npy"

    def head(self, model_id: str) -> dict:
        from .probe import read_head

        if model_id not in self._heads:
            self._heads[model_id] = read_head(self.models_dir / model_id / "model.safetensors", self.body_prefix)
        return self._heads[model_id]

    def own_head(self, weights: Mapping[str, float], dataset: str) -> dict | None:
        """The members' heads combined with the body's weights, when every member with non-zero weight
        was trained on `dataset` (their heads then share one label space); else None."""
        used = {m: w for m, w in weights.items() if w != 0}
        if any(self.info(m)["dataset"] != dataset for m in used):
            return None
        heads = {m: self.head(m) for m in used}
        keys = next(iter(heads.values())).keys()
        return {k: sum(float(w) * heads[m][k].double() for m, w in used.items()).float() for k in keys}


def evaluate_points(points: Iterable[dict], bodies: Bodies, evaluator, inputs: Mapping, log=sys.stderr) -> list[dict]:
    """Rows (one per point x eval dataset x head) for points {"weights": {id: w}, "eval": [datasets], ...}."""
    rows = []
    for point in points:
        started = time.perf_counter()
        ids = list(point["weights"])
        first = len(rows)
        evaluator.set_body(combine([bodies.vector_path(m) for m in ids], [point["weights"][m] for m in ids]))
        for dataset in point["eval"]:
            head = bodies.own_head(point["weights"], dataset)
            for row in evaluator.evaluate(inputs[dataset], head):
                rows.append({**{k: v for k, v in point.items() if k not in ("weights", "eval")},
                             "weights": json.dumps(point["weights"], sort_keys=True), **row})
        scores = ", ".join(f"{r['eval_dataset']} {r['head']} {r['accuracy']:.3f}" for r in rows[first:])
        print(f"{point.get('point', '')}: {time.perf_counter() - started:.1f} s; {scores}", file=log, flush=True)
    return rows


def line_points(a: Mapping, b: Mapping, alphas: Sequence[float]) -> list[dict]:
    evals = list(dict.fromkeys([a["dataset"], b["dataset"]]))
    points = []
    for alpha in alphas:
        wa, wb = line_weights(alpha)
        points.append({"point": f"alpha={alpha:g}", "alpha": float(alpha),
                       "weights": {a["model_id"]: float(wa), b["model_id"]: float(wb)}, "eval": evals})
    return points


def region_points(group: Group, bodies: Bodies, hull_samples: int, concentration: float, extrapolated: int,
                  beta: float, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    k = len(group.members)
    points = [{"kind": "member", "point": m, "weights": {m: 1.0}} for m in group.members]
    for i, w in enumerate(dirichlet_weights(k, hull_samples, concentration, rng)):
        points.append({"kind": "hull", "point": f"hull-{i}", "weights": dict(zip(group.members, map(float, w)))})
    for i, w in enumerate(extrapolated_weights(k, extrapolated, beta)):
        points.append({"kind": "extrapolated", "point": f"extrapolated-{i}",
                       "weights": dict(zip(group.members, map(float, w)))})
    points += [{"kind": "other", "point": m, "weights": {m: 1.0}} for m in group.others]
    for p in points:
        p.update(group=group.name, group_kind=group.kind, eval=group.datasets)
        single = next(iter(p["weights"])) if len(p["weights"]) == 1 else None
        info = bodies.info(single) if single else {}
        p.update(model_dataset=info.get("dataset"), model_task=info.get("task"), model_seed=info.get("seed"))
    return points


# ---- summaries -----------------------------------------------------------------------------------

def line_summary(lines: pd.DataFrame, head: str = "probe") -> pd.DataFrame:
    """Per pair and eval dataset: accuracy at the ends, inside (0 < alpha < 1), and at the farthest
    extrapolation on each side. `inside_minus_ends_min` >= 0: no dip between the ends;
    `far_minus_near_end` < 0: going past an end loses accuracy against that end."""
    rows = []
    for (pair, rel, dataset), sub in lines[lines["head"] == head].groupby(["pair", "relation", "eval_dataset"]):
        acc = sub.set_index("alpha")["accuracy"].sort_index()
        loss = sub.set_index("alpha")["loss"].sort_index()
        if not {0.0, 1.0} <= set(acc.index):
            raise InputError(f"pair {pair}: the alphas must include 0 and 1 (the finetuned ends) to be summarised")
        inside = (acc.index > 0) & (acc.index < 1)
        ends = acc[[0.0, 1.0]]
        # past each end, the farthest point against the end it extends
        gaps = []
        if acc.index.min() < 0:
            gaps.append(acc.iloc[0] - acc[0.0])
        if acc.index.max() > 1:
            gaps.append(acc.iloc[-1] - acc[1.0])
        rows.append({"pair": pair, "relation": rel, "eval_dataset": dataset, "head": head,
                     "end_accuracy_min": ends.min(), "end_accuracy_max": ends.max(),
                     "inside_accuracy_mean": acc[inside].mean(), "inside_accuracy_min": acc[inside].min(),
                     "inside_minus_ends_min": acc[inside].min() - ends.min(),
                     "far_minus_near_end": float(np.mean(gaps)) if gaps else np.nan,
                     "inside_loss_max": loss[inside].max(), "end_loss_max": loss[[0.0, 1.0]].max()})
    return pd.DataFrame(rows)


def beats(a: np.ndarray, b: np.ndarray) -> float:
    """Share of (x in a, y in b) with x > y, ties counting half."""
    a, b = np.asarray(a, float)[:, None], np.asarray(b, float)[None, :]
    if a.size == 0 or b.size == 0:
        return float("nan")
    return float(np.mean((a > b) + 0.5 * (a == b)))


def region_summary(region: pd.DataFrame, head: str = "probe") -> pd.DataFrame:
    """Per group and eval dataset: how often hull samples beat each other kind of point (the paper's
    comparison), with the mean accuracy of each kind."""
    rows = []
    for (group, dataset), sub in region[region["head"] == head].groupby(["group", "eval_dataset"]):
        acc = {k: sub.loc[sub["kind"] == k, "accuracy"].to_numpy() for k in KINDS}
        for other in ("member", "extrapolated", "other"):
            rows.append({"group": group, "eval_dataset": dataset, "head": head, "versus": other,
                         "hull_beats": beats(acc["hull"], acc[other]),
                         "hull_accuracy_mean": acc["hull"].mean() if acc["hull"].size else np.nan,
                         "versus_accuracy_mean": acc[other].mean() if acc[other].size else np.nan,
                         "hull_n": acc["hull"].size, "versus_n": acc[other].size})
    return pd.DataFrame(rows)


def report_markdown(lines: pd.DataFrame, line_sum: pd.DataFrame, region_sum: pd.DataFrame) -> str:
    out = ["# Interpolation and region (experiment E2)", "",
           "Accuracy of a fresh linear head (probe) fitted on each eval dataset's training sample.", "",
           "## Lines theta(alpha) = (1 - alpha) a + alpha b", "",
           "| relation | pairs x eval datasets | weaker end | inside mean | inside min - weaker end | "
           "farthest extrapolation - nearer end |", "|---|---|---|---|---|---|"]
    for rel in RELATIONS:
        sub = line_sum[line_sum["relation"] == rel]
        if sub.empty:
            continue
        out.append(f"| {rel} | {len(sub)} | {sub['end_accuracy_min'].mean():.3f} | "
                   f"{sub['inside_accuracy_mean'].mean():.3f} | {sub['inside_minus_ends_min'].mean():+.3f} | "
                   f"{sub['far_minus_near_end'].mean():+.3f} |")
    out += ["", *line_verdicts(line_sum), "", "## Region: hull samples against other points", "",
            "| group | eval dataset | versus | hull beats | hull mean | versus mean |", "|---|---|---|---|---|---|"]
    for r in region_sum.itertuples():
        out.append(f"| {r.group} | {r.eval_dataset} | {r.versus} | {r.hull_beats:.2f} | "
                   f"{r.hull_accuracy_mean:.3f} | {r.versus_accuracy_mean:.3f} |")
    return "\n".join(out) + "\n"


def line_verdicts(line_sum: pd.DataFrame, tolerance: float = 0.02) -> list[str]:
    """Plain sentences: does the segment stay at the ends' level, and does extrapolating degrade?"""
    out = []
    for rel in RELATIONS:
        sub = line_sum[line_sum["relation"] == rel]
        if sub.empty:
            continue
        dip = sub["inside_minus_ends_min"].mean()
        far = sub["far_minus_near_end"].mean()
        inside = "stays within" if dip >= -tolerance else "falls below"
        outside = "degrades" if far < -tolerance else "does not degrade"
        out.append(f"- {rel}: inside the segment, accuracy {inside} {tolerance:.2f} of the weaker end "
                   f"(mean {dip:+.3f}); extrapolating to the farthest alphas {outside} it against the nearer end "
                   f"(mean {far:+.3f}).")
    return out


def summarise(line_files: Sequence[str], region_files: Sequence[str]) -> dict[str, pd.DataFrame]:
    lines = pd.concat([pd.read_parquet(f) for f in line_files], ignore_index=True) if line_files else pd.DataFrame()
    region = pd.concat([pd.read_parquet(f) for f in region_files], ignore_index=True) if region_files else pd.DataFrame()
    return {"lines": lines, "region": region,
            "line_summary": line_summary(lines) if len(lines) else pd.DataFrame(),
            "region_summary": region_summary(region) if len(region) else pd.DataFrame()}


# ---- CLI -------------------------------------------------------------------------------------------

def _evaluator_and_inputs(args):
    from .evaluation import read_inputs
    from .probe import BodyEvaluator

    settings = json.loads(args.settings)
    manifest = read_json(args.manifest)
    inputs = {}
    for path in args.inputs:
        item = read_inputs(path)
        inputs[item.dataset] = item
    evaluator = BodyEvaluator(args.base_dir, manifest, **settings)
    return evaluator, inputs, Bodies(args.weights_dir, args.models_dir, evaluator.body_prefix)


def _run_line(args) -> pd.DataFrame:
    evaluator, inputs, bodies = _evaluator_and_inputs(args)
    a, b = bodies.info(args.a), bodies.info(args.b)
    rows = evaluate_points(line_points(a, b, args.alphas), bodies, evaluator, inputs)
    frame = pd.DataFrame(rows)
    frame.insert(0, "pair", pair_id(args.a, args.b))
    frame.insert(1, "relation", relation(a, b))
    for side, m in (("a", a), ("b", b)):
        for key in ("model_id", "dataset", "task", "seed"):
            frame[f"{key if key != 'model_id' else 'model'}_{side}"] = m[key]
    frame["eval_side"] = np.where(frame["eval_dataset"] == a["dataset"],
                                  np.where(frame["eval_dataset"] == b["dataset"], "both", "a"), "b")
    return frame


def _run_region(args) -> pd.DataFrame:
    evaluator, inputs, bodies = _evaluator_and_inputs(args)
    datasets = list(inputs)  # one job per eval dataset of the group, so a large group spreads over cores
    group = Group(args.group, args.group.split("-", 1)[0], datasets, list(args.members), list(args.others or []))
    points = region_points(group, bodies, args.hull_samples, args.concentration, args.extrapolated, args.beta, args.seed)
    return pd.DataFrame(evaluate_points(points, bodies, evaluator, inputs))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["line", "region", "summarise"])
    for name in ("--base-dir", "--manifest", "--weights-dir", "--models-dir", "--out", "--a", "--b", "--group"):
        parser.add_argument(name)
    parser.add_argument("--inputs", nargs="+", default=[])
    parser.add_argument("--settings", default="{}")
    parser.add_argument("--alphas", nargs="+", type=float)
    parser.add_argument("--members", nargs="+")
    parser.add_argument("--others", nargs="*")
    parser.add_argument("--hull-samples", type=int, default=8)
    parser.add_argument("--concentration", type=float, default=1.0)
    parser.add_argument("--extrapolated", type=int, default=3)
    parser.add_argument("--beta", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lines", nargs="*", default=[])
    parser.add_argument("--regions", nargs="*", default=[])
    for name in ("--out-lines", "--out-region", "--out-line-summary", "--out-region-summary", "--report"):
        parser.add_argument(name)
    args = parser.parse_args(argv)
    if args.command == "summarise":
        tables = summarise(args.lines, args.regions)
        write_parquet(args.out_lines, tables["lines"])
        write_parquet(args.out_region, tables["region"])
        write_parquet(args.out_line_summary, tables["line_summary"])
        write_parquet(args.out_region_summary, tables["region_summary"])
        text = report_markdown(tables["lines"], tables["line_summary"], tables["region_summary"])
        with atomic_path(args.report) as part:
            part.write_text(text)
        print(text, file=sys.stderr)
        return
    frame = _run_line(args) if args.command == "line" else _run_region(args)
    write_parquet(args.out, frame)


if __name__ == "__main__":
    run_cli(main)
