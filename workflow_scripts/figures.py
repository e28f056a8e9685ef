"""Figures of the geometry stage (matplotlib, PNG), each readable on its own: title, axes, legend.

CLI:
  python -m workflow_scripts.figures geometry --distances D.parquet --projection P.parquet --out-dir DIR
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["geometry"])
    parser.add_argument("--distances", required=True)
    parser.add_argument("--projection", required=True)
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args(argv)
    geometry_figures(args.distances, args.projection, args.out_dir)


if __name__ == "__main__":
    run_cli(main)
