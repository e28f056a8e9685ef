"""Figures of the geometry and interpolation stages (matplotlib, PNG), each readable on its own.

CLI:
  python -m workflow_scripts.figures geometry --distances D.parquet --projection P.parquet --out-dir DIR
  python -m workflow_scripts.figures interpolation --lines L.parquet --region R.parquet --out-dir DIR
  python -m workflow_scripts.figures centroid --summary S.parquet --out GAIN.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .geometry_summary import RELATIONS, matrices  # noqa: E402
from .io import atomic_path, run_cli  # noqa: E402

MARKERS = "osD^vP<>Xph*+x"


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as part:
        fig.savefig(part, format="png", dpi=130)
    plt.close(fig)


def style_maps(models: pd.DataFrame) -> tuple[dict, dict]:
    tasks = sorted(models["task"].dropna().unique())
    datasets = list(dict.fromkeys(models.sort_values(["task", "dataset"])["dataset"].dropna()))
    cmap = plt.get_cmap("tab10")
    colours = {t: cmap(i % 10) for i, t in enumerate(tasks)}
    markers = {d: MARKERS[i % len(MARKERS)] for i, d in enumerate(datasets)}
    return colours, markers


def projection_plot(projection: pd.DataFrame, method: str, path: Path) -> None:
    points = projection[projection["method"] == method]
    models = points[points["model_id"] != "pretrained"]
    colours, markers = style_maps(models)
    fig, ax = plt.subplots(figsize=(8, 6))
    for (task, dataset), group in models.groupby(["task", "dataset"], sort=True):
        ax.scatter(group["x"], group["y"], color=colours[task], marker=markers[dataset], s=60,
                   edgecolor="black", linewidth=0.5, label=f"{dataset} ({task})")
    pre = points[points["model_id"] == "pretrained"]
    ax.scatter(pre["x"], pre["y"], color="black", marker="*", s=260, label="pretrained")
    title = {"pca": "PCA of model bodies (exact, from the Gram matrix)", "tsne": "t-SNE of model bodies (Euclidean distances)"}
    ax.set_title(title[method])
    ax.set_xlabel(f"{method.upper()} 1")
    ax.set_ylabel(f"{method.upper()} 2")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), title="dataset (task)")
    _save(fig, path)


def heatmap(table: pd.DataFrame, path: Path) -> None:
    geo = matrices(table)
    labels = [f"{r.task} · {r.dataset} · s{r.seed}" for r in geo.models.itertuples()]
    n = len(labels)
    fig, ax = plt.subplots(figsize=(max(6, 0.28 * n + 3), max(5, 0.28 * n + 2)))
    shown = geo.cosine.astype(float).copy()
    np.fill_diagonal(shown, np.nan)  # self-similarity (1.0) would flatten the colour scale
    off = shown[np.isfinite(shown)]
    image = ax.imshow(shown, cmap="viridis", vmin=min(0.0, float(off.min())) if off.size else 0.0,
                      vmax=float(off.max()) if off.size else 1.0)
    ax.set_xticks(range(n), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(n), labels, fontsize=7)
    # lines between datasets, thicker between tasks
    for key, width in (("dataset", 0.6), ("task", 1.8)):
        values = geo.models[key].to_numpy()
        for edge in np.flatnonzero(values[1:] != values[:-1]) + 0.5:
            ax.axhline(edge, color="white", linewidth=width)
            ax.axvline(edge, color="white", linewidth=width)
    fig.colorbar(image, ax=ax, label="cosine similarity of task vectors")
    ax.set_title("Task-vector cosine similarity, ordered by task and dataset (diagonal blank)")
    ax.set_xlabel("model (task · dataset · seed)")
    ax.set_ylabel("model (task · dataset · seed)")
    _save(fig, path)


def relation_boxplot(table: pd.DataFrame, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, metric, ylabel in ((axes[0], "cosine", "cosine similarity of task vectors"),
                               (axes[1], "euclidean", "Euclidean distance between bodies")):
        part = table[table["metric"] == metric]
        present = [r for r in RELATIONS if r in set(part["relation"])]
        ax.boxplot([part.loc[part["relation"] == r, "value"] for r in present], showmeans=True)
        ax.set_xticks(range(1, len(present) + 1), [r.replace("_", " ") for r in present])
        ax.set_title(f"{metric.capitalize()} by relation")
        ax.set_xlabel("relation of the pair")
        ax.set_ylabel(ylabel)
    fig.suptitle("Pairs of finetuned models by relation: same dataset (other seed), same task, other task")
    handles = [plt.Line2D([], [], color="orange", label="median"),
               plt.Line2D([], [], color="green", marker="^", linestyle="", label="mean")]
    axes[1].legend(handles=handles, loc="best")
    _save(fig, path)


def geometry_figures(distances: str | Path, projection: str | Path, out_dir: str | Path) -> None:
    table = pd.read_parquet(distances)
    proj = pd.read_parquet(projection)
    out_dir = Path(out_dir)
    projection_plot(proj, "pca", out_dir / "pca.png")
    projection_plot(proj, "tsne", out_dir / "tsne.png")
    heatmap(table, out_dir / "similarity_heatmap.png")
    relation_boxplot(table, out_dir / "relations_boxplot.png")


def line_plot(lines: pd.DataFrame, metric: str, path: Path) -> None:
    """One panel per relation; one curve per pair and eval dataset (fresh linear head)."""
    probe = lines[lines["head"] == "probe"]
    present = [r for r in RELATIONS if r in set(probe["relation"])]
    fig, axes = plt.subplots(1, max(1, len(present)), figsize=(5.2 * max(1, len(present)), 4.6), sharey=True,
                             squeeze=False)
    for ax, rel in zip(axes[0], present):
        part = probe[probe["relation"] == rel]
        ax.axvspan(0, 1, color="0.92", zorder=0, label="between the ends")
        for i, ((pair, dataset), curve) in enumerate(part.groupby(["pair", "eval_dataset"], sort=True)):
            curve = curve.sort_values("alpha")
            colour = plt.get_cmap("tab10")(i % 10)
            a, b = pair.split("--")
            ax.plot(curve["alpha"], curve[metric], color=colour, marker=".", label=f"{a} → {b} on {dataset}")
            ends = curve[curve["alpha"].isin([0.0, 1.0])]
            ax.scatter(ends["alpha"], ends[metric], color=colour, edgecolor="black", s=60, zorder=3)
        ax.set_title(rel.replace("_", " "))
        ax.set_xlabel("alpha  (0: first model, 1: second; outside [0, 1]: extrapolation)")
        ax.legend(fontsize=7, loc="best")
    axes[0][0].set_ylabel(f"test {metric} (fresh linear head)")
    fig.suptitle(f"{metric.capitalize()} along theta(alpha) = (1 - alpha) a + alpha b; large dots: the finetuned ends")
    _save(fig, path)


def region_plot(region: pd.DataFrame, path: Path) -> None:
    """Accuracy of each kind of point, per group and eval dataset (strip plot, means as bars)."""
    probe = region[region["head"] == "probe"]
    panels = list(probe.groupby(["group", "eval_dataset"], sort=True))
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(3.6 * max(1, len(panels)), 4.4), squeeze=False)
    kinds = ["member", "hull", "extrapolated", "other"]
    names = {"member": "group's\nmodels", "hull": "hull\nsamples", "extrapolated": "extra-\npolated",
             "other": "other\ndatasets"}
    rng = np.random.default_rng(0)
    for ax, ((group, dataset), part) in zip(axes[0], panels):
        for x, kind in enumerate(kinds):
            values = part.loc[part["kind"] == kind, "accuracy"].to_numpy()
            if values.size:
                ax.scatter(x + rng.uniform(-0.12, 0.12, values.size), values, s=22, alpha=0.8,
                           color=plt.get_cmap("tab10")(x))
                ax.hlines(values.mean(), x - 0.3, x + 0.3, color="black", linewidth=1.5)
        ax.set_xticks(range(len(kinds)), [names[k] for k in kinds], fontsize=8)
        ax.set_title(f"{group}\non {dataset}", fontsize=9)
        ax.set_ylabel("test accuracy (fresh linear head)")
    fig.suptitle("Region of a group: hull samples vs its models, extrapolated points and other datasets' models "
                 "(bar: mean)", fontsize=10)
    _save(fig, path)


def interpolation_figures(lines: str | Path, region: str | Path, out_dir: str | Path) -> None:
    line_table = pd.read_parquet(lines)
    out_dir = Path(out_dir)
    line_plot(line_table, "accuracy", out_dir / "lines_accuracy.png")
    line_plot(line_table, "loss", out_dir / "lines_loss.png")
    region_plot(pd.read_parquet(region), out_dir / "region.png")


def centroid_plot(summary: str | Path, path: Path) -> None:
    """Per target: mean test accuracy from the pretrained start and from the leave-one-out centroid."""
    table = pd.read_parquet(summary).sort_values(["task", "target"])
    x = np.arange(len(table))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(table) + 2), 4.6))
    for offset, init, colour in ((-0.2, "pretrained", "0.6"), (0.2, "centroid", "tab:blue")):
        ax.bar(x + offset, table[f"{init}_accuracy"], width=0.4, yerr=table[f"{init}_sd"], capsize=3,
               color=colour, label=f"from the {init}" + (" (leave-one-out)" if init == "centroid" else ""))
    for xi, r in zip(x, table.itertuples()):
        ax.annotate(f"{100 * r.gain:+.1f}\n{r.outcome}", (xi, max(r.pretrained_accuracy, r.centroid_accuracy)),
                    textcoords="offset points", xytext=(0, 12), ha="center", fontsize=7)
    ax.set_xticks(x, [f"{r.target}\n({r.task})" for r in table.itertuples()], fontsize=8)
    ax.set_ylabel("test accuracy (mean over seeds, bar: sd)")
    ax.set_ylim(0, 1.12)
    ax.set_title(f"Finetuning from the centroid vs the pretrained model: mean gain {100 * table['gain'].mean():+.2f} points")
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["geometry", "interpolation", "centroid"])
    parser.add_argument("--distances")
    parser.add_argument("--projection")
    parser.add_argument("--lines")
    parser.add_argument("--region")
    parser.add_argument("--summary")
    parser.add_argument("--out-dir")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    if args.kind == "centroid":
        centroid_plot(args.summary, Path(args.out))
    elif args.kind == "geometry":
        geometry_figures(args.distances, args.projection, args.out_dir)
    else:
        interpolation_figures(args.lines, args.region, args.out_dir)


if __name__ == "__main__":
    run_cli(main)
