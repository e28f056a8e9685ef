"""Leave-one-out centroids and the comparison of finetuning from them against the pretrained start (E3).

The centroid for a target dataset is the mean body of every finetuned model except the target's own,
summed chunk by chunk in float64 from the memory-mapped vectors (never all bodies in memory). It is
saved as a loadable model folder: model.safetensors holding the body under the base's parameter names
(no head: finetuning adds a fresh one), the base's config.json, and centroid.json with the members.

CLI:
  python -m workflow_scripts.centroid make --target NAME --members VECTOR.npy... --manifest M.json
         --base-dir DIR --pretrained P.npy --out-dir DIR
  python -m workflow_scripts.centroid compare --metrics METRICS.json... --out-table T.parquet
         --out-summary S.parquet --report S.md
"""
from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .io import InputError, atomic_path, read_json, run_cli, write_json, write_parquet
from .weights import load_vector, weighted_sum


def mean_vector(paths: Sequence[str | Path], chunk: int = 1 << 22) -> np.ndarray:
    """The mean of the vectors, summed in float64 chunk by chunk from memory maps."""
    if not paths:
        raise InputError("a centroid needs at least one member model")
    return weighted_sum(paths, [1.0] * len(paths), divisor=len(paths), chunk=chunk)


def leave_one_out(models: Sequence[Mapping], target: str) -> list[str]:
    """Ids of every model not finetuned on `target`."""
    members = sorted(m["model_id"] for m in models if m["dataset"] != target)
    if not members:
        raise InputError(f"centroid for {target}: no models of other datasets to average")
    return members


def save_body(vector: np.ndarray, manifest: Mapping, base_dir, out_dir, info: Mapping) -> None:
    """A model folder whose body is `vector`: safetensors under the base's names, config.json, centroid.json."""
    import torch
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = manifest["body_prefix"] + "."
    tensors = {prefix + p["name"]: torch.from_numpy(vector[p["offset"]: p["offset"] + p["numel"]].copy()).reshape(p["shape"])
               for p in manifest["parameters"]}
    with atomic_path(out_dir / "model.safetensors") as part:
        # one metadata key only: safetensors writes a map of several in an order that varies from process
        # to process, so the same centroid would differ byte for byte between runs (members: centroid.json)
        save_file(tensors, str(part), metadata={"format": "pt"})
    with atomic_path(out_dir / "config.json") as part:
        shutil.copyfile(Path(base_dir) / "config.json", part)
    write_json(out_dir / "centroid.json", info)


def make_centroid(target: str, member_vectors: Sequence[str | Path], manifest_path, base_dir, pretrained,
                  out_dir) -> dict:
    manifest = read_json(manifest_path)
    sidecars = [read_json(Path(p).with_suffix(".json")) for p in member_vectors]
    if any(s.get("dataset") == target for s in sidecars):
        raise InputError(f"centroid for {target}: its own models must be left out, got "
                         f"{[s['model_id'] for s in sidecars if s.get('dataset') == target]}")
    vector = mean_vector(member_vectors)
    if vector.shape != (manifest["total"],):
        raise InputError(f"member vectors have {vector.size:,} values, the manifest {manifest['total']:,}")
    pre = load_vector(pretrained, manifest)
    info = {"model_id": f"centroid-loo-{target}", "target": target,
            "members": [s["model_id"] for s in sidecars],
            "member_datasets": sorted({s["dataset"] for s in sidecars}),
            "sha256": hashlib.sha256(memoryview(vector).cast("B")).hexdigest(),
            "norm": float(np.linalg.norm(vector.astype(np.float64))),
            "distance_to_pretrained": float(np.linalg.norm(vector.astype(np.float64) - pre))}
    save_body(vector, manifest, base_dir, out_dir, info)
    print(f"centroid-loo-{target}: mean of {len(sidecars)} bodies, {info['distance_to_pretrained']:.4f} from the "
          "pretrained body", file=sys.stderr)
    return info


# ---- comparison --------------------------------------------------------------------------------

def comparison_table(metrics_files: Sequence[str | Path]) -> pd.DataFrame:
    rows = []
    for path in metrics_files:
        m = read_json(path)
        if m.get("init") not in ("centroid", "pretrained"):
            raise InputError(f"{path}: init {m.get('init')!r} is neither centroid nor pretrained")
        s = m["settings"]
        rows.append({"target": m["dataset"], "task": m["task"], "init": m["init"], "seed": m["seed"],
                     "model_id": m["model_id"], "method": s["method"], "few_shot": s.get("train_examples"),
                     "train_examples": m["train_examples"],
                     "steps": m["steps"], "test_accuracy": m["test"]["accuracy"], "test_loss": m["test"]["loss"],
                     "val_accuracy": m["validation"]["accuracy"],
                     "test_majority_accuracy": m["test"]["majority_accuracy"]})
    return pd.DataFrame(rows).sort_values(["target", "init", "seed"]).reset_index(drop=True)


def summarise_targets(table: pd.DataFrame) -> pd.DataFrame:
    """Per target: mean test accuracy of each start, gain (centroid - pretrained), the seeds' spread
    (pooled standard deviation of the two starts) and the outcome: a tie when |gain| <= spread."""
    rows = []
    for target, sub in table.groupby("target", sort=True):
        acc = {init: sub.loc[sub["init"] == init, "test_accuracy"].to_numpy() for init in ("pretrained", "centroid")}
        if not all(len(v) for v in acc.values()):
            raise InputError(f"target {target}: needs runs from both the centroid and the pretrained start")
        sd = {k: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for k, v in acc.items()}
        gain = float(acc["centroid"].mean() - acc["pretrained"].mean())
        spread = float(np.sqrt((sd["pretrained"] ** 2 + sd["centroid"] ** 2) / 2))
        outcome = "tie" if abs(gain) <= spread else ("win" if gain > 0 else "loss")
        majority = float(sub["test_majority_accuracy"].iloc[0])
        # a start that never leaves the majority class learned nothing: say so beside the outcome
        stuck = {k: bool(np.all(np.abs(v - majority) < 1e-9)) for k, v in acc.items()}
        rows.append({"target": target, "task": sub["task"].iloc[0], "seeds": len(acc["centroid"]),
                     "pretrained_accuracy": float(acc["pretrained"].mean()), "pretrained_sd": sd["pretrained"],
                     "centroid_accuracy": float(acc["centroid"].mean()), "centroid_sd": sd["centroid"],
                     "gain": gain, "spread": spread, "outcome": outcome, "majority_accuracy": majority,
                     "pretrained_at_majority": stuck["pretrained"], "centroid_at_majority": stuck["centroid"]})
    return pd.DataFrame(rows)


def totals(summary: pd.DataFrame) -> dict:
    counts = summary["outcome"].value_counts()
    return {"targets": int(len(summary)), "wins": int(counts.get("win", 0)), "ties": int(counts.get("tie", 0)),
            "losses": int(counts.get("loss", 0)), "centroid_better": int((summary["gain"] > 0).sum()),
            "mean_gain": float(summary["gain"].mean())}


def setting(table: pd.DataFrame) -> str:
    """The finetuning setting in words: method, and the few-shot size or all training examples."""
    method = ", ".join(sorted(set(table["method"])))
    shots = sorted({int(x) for x in table["few_shot"].dropna()}) if "few_shot" in table else []
    sizes = f"{', '.join(map(str, shots))}-shot" if shots else \
        f"all training examples ({int(table['train_examples'].min())}-{int(table['train_examples'].max())})"
    return f"{method}, {sizes}"


def report_markdown(table: pd.DataFrame, summary: pd.DataFrame) -> str:
    t = totals(summary)
    out = ["# Centroid vs pretrained start (experiment E3)", "",
           f"Finetuning: {setting(table)}; "
           f"steps: {', '.join(map(str, sorted(set(table['steps']))))}; seeds per start: "
           f"{', '.join(map(str, sorted(set(summary['seeds']))))}. Test accuracy, mean over seeds (sd).", "",
           "| target | task | pretrained | centroid (leave-one-out) | gain | outcome |", "|---|---|---|---|---|---|"]
    for r in summary.itertuples():
        marks = [f"{init} start stays at the majority baseline ({r.majority_accuracy:.3f})"
                 for init in ("pretrained", "centroid") if getattr(r, f"{init}_at_majority")]
        out.append(f"| {r.target} | {r.task} | {r.pretrained_accuracy:.3f} ({r.pretrained_sd:.3f}) | "
                   f"{r.centroid_accuracy:.3f} ({r.centroid_sd:.3f}) | {100 * r.gain:+.2f} | {r.outcome}"
                   f"{'; ' + ', '.join(marks) if marks else ''} |")
    out += ["", f"Centroid better on {t['centroid_better']} of {t['targets']} targets; wins / ties / losses "
            f"{t['wins']} / {t['ties']} / {t['losses']} (a tie: |gain| within the seeds' pooled sd); "
            f"mean gain {100 * t['mean_gain']:+.2f} accuracy points (the paper: 11 of 12, +3.06)."]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["make", "compare"])
    parser.add_argument("--target")
    parser.add_argument("--members", nargs="+", default=[])
    parser.add_argument("--manifest")
    parser.add_argument("--base-dir")
    parser.add_argument("--pretrained")
    parser.add_argument("--out-dir")
    parser.add_argument("--metrics", nargs="+", default=[])
    parser.add_argument("--out-table")
    parser.add_argument("--out-summary")
    parser.add_argument("--report")
    args = parser.parse_args(argv)
    if args.command == "make":
        make_centroid(args.target, args.members, args.manifest, args.base_dir, args.pretrained, args.out_dir)
        return
    table = comparison_table(args.metrics)
    summary = summarise_targets(table)
    write_parquet(args.out_table, table)
    write_parquet(args.out_summary, summary)
    text = report_markdown(table, summary)
    with atomic_path(args.report) as part:
        part.write_text(text)
    print(text, file=sys.stderr)


if __name__ == "__main__":
    run_cli(main)
