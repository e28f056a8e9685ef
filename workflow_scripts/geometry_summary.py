"""Group summaries, nearest neighbours, spectral clustering and projections from the distance table.

Everything here works from `distances.parquet` alone: the Gram matrix of task vectors is recovered as
G_aa = euclidean(a, pretrained)^2 and G_ab = cosine(a, b) |a| |b|, so no vector is read again.

CLI:
  python -m workflow_scripts.geometry_summary --distances D.parquet --summary S.parquet --clusters C.parquet
         --projection P.parquet --report S.md [--seed N] [--perplexity X]
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .io import InputError, atomic_path, run_cli, write_parquet

RELATIONS = ["same_dataset", "same_task", "other_task", "to_pretrained"]


@dataclass
class Geometry:
    """Square matrices over the finetuned models, ordered by task, dataset and seed."""

    models: pd.DataFrame  # model_id, dataset, task, seed
    cosine: np.ndarray
    euclidean: np.ndarray
    to_pretrained: np.ndarray  # Euclidean distance of each body to the pretrained body

    @property
    def gram(self) -> np.ndarray:
        norms = self.to_pretrained
        return self.cosine * np.outer(norms, norms)


def matrices(table: pd.DataFrame) -> Geometry:
    required = {"model_a", "model_b", "metric", "value", "dataset_a", "task_a", "seed_a", "dataset_b", "task_b", "seed_b"}
    if not required <= set(table.columns):
        raise InputError(f"distance table lacks columns {sorted(required - set(table.columns))}")
    pairs = table[table["model_b"] != "pretrained"]
    # every finetuned model has exactly one row to the pretrained body: it lists the models
    to_p = table[(table["model_b"] == "pretrained") & (table["metric"] == "euclidean")]
    models = (to_p[["model_a", "dataset_a", "task_a", "seed_a"]].set_axis(["model_id", "dataset", "task", "seed"], axis=1)
              .drop_duplicates("model_id").sort_values(["task", "dataset", "seed"]).reset_index(drop=True))
    index = {m: i for i, m in enumerate(models["model_id"])}
    unknown = (set(pairs["model_a"]) | set(pairs["model_b"])) - set(index)
    if unknown:
        raise InputError(f"distance table: models without a distance to the pretrained body: {sorted(unknown)[:5]}")
    n = len(models)
    cosine, euclidean = np.eye(n), np.zeros((n, n))
    for metric, target in (("cosine", cosine), ("euclidean", euclidean)):
        part = pairs[pairs["metric"] == metric]
        ia, ib = part["model_a"].map(index).to_numpy(), part["model_b"].map(index).to_numpy()
        target[ia, ib] = target[ib, ia] = part["value"].to_numpy()
    to_pretrained = np.zeros(n)
    to_pretrained[to_p["model_a"].map(index).to_numpy()] = to_p["value"].to_numpy()
    expected = n * (n - 1) // 2
    for metric in ("cosine", "euclidean"):
        if (pairs["metric"] == metric).sum() != expected:
            raise InputError(f"distance table has {(pairs['metric'] == metric).sum()} {metric} pairs, expected {expected}")
    return Geometry(models, cosine, euclidean, to_pretrained)


def relation_summary(table: pd.DataFrame) -> pd.DataFrame:
    grouped = table.groupby(["relation", "metric"])["value"]
    stats = grouped.agg(["mean", "std", "median", "min", "max", "count"]).reset_index()
    long = stats.melt(id_vars=["relation", "metric"], var_name="statistic", value_name="value")
    return long.rename(columns={"relation": "group"}).assign(section="relation")


def nearest_neighbour_agreement(geo: Geometry) -> pd.DataFrame:
    """Share of models whose nearest other model (by each metric) has the same dataset / task."""
    rows = []
    n = len(geo.models)
    if n < 2:
        return pd.DataFrame(columns=["section", "metric", "group", "statistic", "value"])
    for metric, matrix, pick in (("cosine", geo.cosine, np.argmax), ("euclidean", geo.euclidean, np.argmin)):
        m = matrix.astype(float).copy()
        np.fill_diagonal(m, -np.inf if pick is np.argmax else np.inf)
        nearest = pick(m, axis=1)
        for label in ("dataset", "task"):
            values = geo.models[label].to_numpy()
            rows.append({"section": "nearest_neighbour", "metric": metric, "group": label, "statistic": "agreement",
                         "value": float(np.mean(values == values[nearest]))})
    return pd.DataFrame(rows)


def purity(labels_true: np.ndarray, labels_pred: np.ndarray) -> float:
    """Share of models in the majority true label of their cluster."""
    total = 0
    for cluster in np.unique(labels_pred):
        members = labels_true[labels_pred == cluster]
        total += pd.Series(members).value_counts().iloc[0]
    return total / len(labels_true)


def clustering(geo: Geometry, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Spectral clustering on the cosine similarity of task vectors, scored against dataset and task labels."""
    from sklearn.cluster import SpectralClustering
    from sklearn.metrics import adjusted_rand_score, silhouette_score

    affinity = np.clip(geo.cosine, 0.0, None)  # negative similarity means no affinity
    np.fill_diagonal(affinity, 1.0)
    distance = np.clip(1.0 - geo.cosine, 0.0, None)
    np.fill_diagonal(distance, 0.0)
    n = len(geo.models)
    clusters = geo.models.copy()
    rows = []
    for label in ("dataset", "task"):
        truth = geo.models[label].to_numpy()
        k = len(np.unique(truth))
        if 2 <= k < n:
            found = SpectralClustering(n_clusters=k, affinity="precomputed", random_state=seed,
                                       assign_labels="cluster_qr").fit_predict(affinity)
        else:
            found = np.zeros(n, dtype=int) if k < 2 else np.arange(n)
        clusters[f"cluster_by_{label}"] = found
        scores = {"n_clusters": k, "purity": purity(truth, found), "adjusted_rand": adjusted_rand_score(truth, found),
                  "silhouette_true": silhouette_score(distance, truth, metric="precomputed") if 2 <= k < n else np.nan,
                  "silhouette_found": silhouette_score(distance, found, metric="precomputed")
                  if 2 <= len(np.unique(found)) < n else np.nan}
        rows += [{"section": "clustering", "metric": "cosine", "group": label, "statistic": s, "value": float(v)}
                 for s, v in scores.items()]
    return pd.DataFrame(rows), clusters


def projections(geo: Geometry, seed: int = 0, perplexity: float | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """PCA (exact, from the centred Gram matrix of bodies) and t-SNE (on Euclidean distances), pretrained included."""
    from sklearn.manifold import TSNE

    n = len(geo.models)
    gram = np.zeros((n + 1, n + 1))  # the pretrained body's task vector is zero
    gram[:n, :n] = geo.gram
    centre = np.eye(n + 1) - 1.0 / (n + 1)
    values, vectors = np.linalg.eigh(centre @ gram @ centre)
    order = np.argsort(values)[::-1]
    values, vectors = np.clip(values[order], 0, None), vectors[:, order]
    pca = vectors[:, :2] * np.sqrt(values[:2])
    explained = values[:2] / values.sum() if values.sum() > 0 else np.zeros(2)

    dist = np.zeros((n + 1, n + 1))
    dist[:n, :n] = geo.euclidean
    dist[:n, n] = dist[n, :n] = geo.to_pretrained
    perplexity = perplexity or max(1.0, min(30.0, (n + 1 - 1) / 3))
    tsne = TSNE(n_components=2, metric="precomputed", init="random", perplexity=perplexity,
                random_state=seed).fit_transform(dist)

    models = pd.concat([geo.models, pd.DataFrame([{"model_id": "pretrained", "dataset": None, "task": None, "seed": None}])],
                       ignore_index=True)
    frames = []
    for method, coords in (("pca", pca), ("tsne", tsne)):
        frames.append(models.assign(method=method, x=coords[:, 0], y=coords[:, 1]))
    stats = pd.DataFrame([{"section": "projection", "metric": "euclidean", "group": "pca", "statistic": f"explained_variance_{i + 1}",
                           "value": float(v)} for i, v in enumerate(explained)]
                         + [{"section": "projection", "metric": "euclidean", "group": "tsne", "statistic": "perplexity",
                             "value": float(perplexity)}])
    return pd.concat(frames, ignore_index=True), stats


def ordering_check(summary: pd.DataFrame) -> dict:
    """Is cosine similarity ordered same dataset > same task > other task, as the paper finds?"""
    means = summary[(summary["section"] == "relation") & (summary["metric"] == "cosine") & (summary["statistic"] == "mean")]
    m = dict(zip(means["group"], means["value"]))
    present = [r for r in ("same_dataset", "same_task", "other_task") if r in m]
    holds = all(m[a] > m[b] for a, b in zip(present, present[1:])) if len(present) >= 2 else None
    return {"means": {r: m[r] for r in present}, "holds": holds}


def report_markdown(summary: pd.DataFrame, check: dict, n_models: int) -> str:
    def stat(section, metric, group, statistic):
        hit = summary[(summary["section"] == section) & (summary["metric"] == metric) & (summary["group"] == group)
                      & (summary["statistic"] == statistic)]["value"]
        return float(hit.iloc[0]) if len(hit) else float("nan")

    lines = [f"# Weight-space geometry ({n_models} finetuned models)", "",
             "| relation | cosine of task vectors (mean ± sd) | Euclidean distance of bodies (mean ± sd) | pairs |",
             "|---|---|---|---|"]
    for rel in RELATIONS:
        count = stat("relation", "euclidean", rel, "count")
        if not count == count or count == 0:
            continue
        cos = f"{stat('relation', 'cosine', rel, 'mean'):.4f} ± {stat('relation', 'cosine', rel, 'std'):.4f}" if rel != "to_pretrained" else "—"
        lines.append(f"| {rel} | {cos} | {stat('relation', 'euclidean', rel, 'mean'):.4f} ± "
                     f"{stat('relation', 'euclidean', rel, 'std'):.4f} | {int(count)} |")
    order = " > ".join(f"{k} ({v:.4f})" for k, v in check["means"].items())
    verdict = {True: "holds", False: "does NOT hold", None: "cannot be checked (too few relations)"}[check["holds"]]
    lines += ["", f"Ordering of mean cosine similarity, same dataset > same task > other task: **{verdict}** "
                  f"({order}).", "",
              "| labels | nearest neighbour agrees (cosine) | (Euclidean) | spectral purity | adjusted Rand | silhouette of labels |",
              "|---|---|---|---|---|---|"]
    for label in ("dataset", "task"):
        lines.append(f"| {label} | {stat('nearest_neighbour', 'cosine', label, 'agreement'):.3f} | "
                     f"{stat('nearest_neighbour', 'euclidean', label, 'agreement'):.3f} | "
                     f"{stat('clustering', 'cosine', label, 'purity'):.3f} | {stat('clustering', 'cosine', label, 'adjusted_rand'):.3f} | "
                     f"{stat('clustering', 'cosine', label, 'silhouette_true'):.3f} |")
    return "\n".join(lines) + "\n"


def summarise(distances: str | Path, summary_out, clusters_out, projection_out, report_out, seed: int = 0,
              perplexity: float | None = None) -> pd.DataFrame:
    table = pd.read_parquet(distances)
    geo = matrices(table)
    nn = nearest_neighbour_agreement(geo)
    cluster_stats, clusters = clustering(geo, seed)
    projection, projection_stats = projections(geo, seed, perplexity)
    summary = pd.concat([relation_summary(table), nn, cluster_stats, projection_stats], ignore_index=True)
    summary = summary[["section", "metric", "group", "statistic", "value"]]
    check = ordering_check(summary)
    write_parquet(summary_out, summary)
    write_parquet(clusters_out, clusters)
    write_parquet(projection_out, projection)
    with atomic_path(report_out) as part:
        part.write_text(report_markdown(summary, check, len(geo.models)))
    print(Path(report_out).read_text(), file=sys.stderr)
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--distances", required=True)
    parser.add_argument("--summary", required=True)
    parser.add_argument("--clusters", required=True)
    parser.add_argument("--projection", required=True)
    parser.add_argument("--report", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--perplexity", type=float, default=None)
    args = parser.parse_args(argv)
    summarise(args.distances, args.summary, args.clusters, args.projection, args.report, args.seed, args.perplexity)


if __name__ == "__main__":
    run_cli(main)
