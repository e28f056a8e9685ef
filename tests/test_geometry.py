"""Geometry: streaming distances equal a direct float64 computation; the cache computes only new pairs."""
import numpy as np
import pandas as pd
import pytest

from workflow_scripts import geometry
from workflow_scripts.geometry_summary import (clustering, matrices, nearest_neighbour_agreement, ordering_check,
                                               projections, purity, relation_summary, summarise)
from workflow_scripts.io import InputError
from workflow_scripts.weights import save_vector

DIM = 10_007  # not a multiple of the chunk, so the last chunk is partial


def write_models(folder, vectors, names=None, tasks=None):
    infos = []
    for k, vec in enumerate(vectors):
        name = names[k] if names else f"d{k // 2}-s{k % 2}"
        dataset, seed = name.rsplit("-s", 1)
        save_vector(folder / f"{name}.npy", vec, {"model_id": name, "dataset": dataset,
                                                        "task": tasks[k] if tasks else f"t{k // 4}", "seed": int(seed)})
        infos.append(geometry.describe(folder / f"{name}.json"))
    return infos


@pytest.fixture
def pretrained(tmp_path):
    rng = np.random.default_rng(0)
    vec = rng.normal(size=DIM).astype(np.float32)
    save_vector(tmp_path / "pretrained.npy", vec, {"model_id": "pretrained", "dataset": None, "task": None, "seed": None})
    return vec, geometry.describe(tmp_path / "pretrained.json")


def direct(vectors, p):
    tv = [v.astype(np.float64) - p.astype(np.float64) for v in vectors]
    cos = {(i, j): tv[i] @ tv[j] / np.sqrt((tv[i] @ tv[i]) * (tv[j] @ tv[j])) for i in range(len(tv)) for j in range(len(tv))}
    euc = {(i, j): np.linalg.norm(vectors[i].astype(np.float64) - vectors[j].astype(np.float64))
           for i in range(len(tv)) for j in range(len(tv))}
    to_p = [np.linalg.norm(t) for t in tv]
    return cos, euc, to_p


def table_for(models, pretrained_info, cache=None, threshold=1e-4):
    block, computed = geometry.compute_block(models, models, pretrained_info, cache or {}, threshold, memory_mb=0.1)
    gram, dist = geometry.gram_matrix(block, [m["model_id"] for m in models])
    return geometry.distance_table(models, pretrained_info, gram, dist), block, computed


def check_against_direct(table, models, vectors, p):
    cos, euc, to_p = direct(vectors, p)
    index = {m["model_id"]: i for i, m in enumerate(models)}
    for row in table.itertuples():
        i = index[row.model_a]
        if row.model_b == "pretrained":
            expected = to_p[i]
        else:
            j = index[row.model_b]
            expected = cos[(i, j)] if row.metric == "cosine" else euc[(i, j)]
        assert row.value == pytest.approx(expected, rel=1e-6, abs=1e-12), (row.model_a, row.model_b, row.metric)


def test_random_vectors_match_direct_float64(tmp_path, pretrained):
    p, pinfo = pretrained
    rng = np.random.default_rng(1)
    vectors = [(p + rng.normal(scale=0.01 * (k + 1), size=DIM)).astype(np.float32) for k in range(6)]
    models = write_models(tmp_path, vectors)
    table, block, computed = table_for(models, pinfo)
    assert computed == 21 and len(block) == 21  # 6 * 7 / 2 pairs, diagonal included
    assert len(table) == 6 + 2 * 15  # to pretrained + (cosine, euclidean) per pair
    check_against_direct(table, models, vectors, p)
    assert set(table["relation"]) == {"same_dataset", "same_task", "other_task", "to_pretrained"}


def test_near_identical_models_are_exact(tmp_path, pretrained):
    p, pinfo = pretrained
    rng = np.random.default_rng(2)
    base = (p + rng.normal(scale=0.05, size=DIM)).astype(np.float32)
    close = base.copy()
    close[::997] = np.nextafter(close[::997], np.float32(np.inf))  # a few ulps apart
    other = (base + rng.normal(scale=1e-4, size=DIM)).astype(np.float32)
    vectors = [base, close, other]
    models = write_models(tmp_path, vectors, names=["a-s0", "a-s1", "a-s2"], tasks=["t"] * 3)
    table, block, _ = table_for(models, pinfo)
    check_against_direct(table, models, vectors, p)
    guarded = block.dropna(subset=["sqdist_direct"])
    assert {("a-s0", "a-s1"), ("a-s0", "a-s2"), ("a-s1", "a-s2")} == set(zip(guarded["model_a"], guarded["model_b"]))


def test_blocks_of_a_larger_set_agree_with_one_block(tmp_path, pretrained):
    p, pinfo = pretrained
    rng = np.random.default_rng(3)
    vectors = [(p + rng.normal(scale=0.02, size=DIM)).astype(np.float32) for _ in range(5)]
    models = write_models(tmp_path, vectors)
    blocks = [geometry.compute_block(models[a], models[b], pinfo, {}, memory_mb=0.1)[0]
              for a, b in ((slice(0, 3), slice(0, 3)), (slice(0, 3), slice(3, 5)), (slice(3, 5), slice(3, 5)))]
    gram, dist = geometry.gram_matrix(pd.concat(blocks), [m["model_id"] for m in models])
    check_against_direct(geometry.distance_table(models, pinfo, gram, dist), models, vectors, p)


def test_adding_a_model_computes_only_the_new_pairs(tmp_path, pretrained):
    p, pinfo = pretrained
    rng = np.random.default_rng(4)
    vectors = [(p + rng.normal(scale=0.02, size=DIM)).astype(np.float32) for _ in range(5)]
    models = write_models(tmp_path, vectors)
    first, _, computed = table_for(models[:4], pinfo)
    assert computed == 10
    _, block4, _ = table_for(models[:4], pinfo)
    cache = geometry.load_cache(None)
    cache.update({(*geometry._pair_key(a, b), k): (d, s) for a, b, k, d, s in
                  block4[geometry.CACHE_COLUMNS].itertuples(index=False)})
    table, _, computed = table_for(models, pinfo, cache)
    assert computed == 5  # the new model with the 4 old ones and with itself
    check_against_direct(table, models, vectors, p)

    # a retrained model keeps its id but not its content: its pairs are computed again
    vectors[1] = (vectors[1] + 0.01).astype(np.float32)
    models = write_models(tmp_path, vectors)
    _, _, computed = table_for(models[:4], pinfo, cache)
    assert computed == 4


def test_cache_round_trip_through_the_distance_job(tmp_path, pretrained):
    p, pinfo = pretrained
    rng = np.random.default_rng(5)
    vectors = [(p + rng.normal(scale=0.02, size=DIM)).astype(np.float32) for _ in range(3)]
    models = write_models(tmp_path, vectors)
    block, _ = geometry.compute_block(models, models, pinfo, {})
    block.to_parquet(tmp_path / "block.parquet")
    jsons = [str(tmp_path / f"{m['model_id']}.json") for m in models]
    geometry.distances([tmp_path / "block.parquet"], jsons, str(tmp_path / "pretrained.json"),
                       tmp_path / "distances.parquet", tmp_path / "cache.parquet")
    cache = geometry.load_cache(tmp_path / "cache.parquet")
    assert len(cache) == 6
    _, computed = geometry.compute_block(models, models, pinfo, cache)
    assert computed == 0
    with pytest.raises(InputError, match="no Gram entry for the pair"):
        geometry.distances([tmp_path / "block.parquet"], [*jsons, str(tmp_path / "pretrained.json")],
                           str(tmp_path / "pretrained.json"), tmp_path / "d2.parquet", None)


def test_vectors_of_different_lengths_are_refused(tmp_path, pretrained):
    p, pinfo = pretrained
    models = write_models(tmp_path, [p[:-1].copy(), p.copy()])
    with pytest.raises(InputError, match="vectors of different lengths cannot be compared"):
        geometry.compute_block(models, models, pinfo, {})


def test_truncated_vector_file_is_refused(tmp_path, pretrained):
    p, _ = pretrained
    path = tmp_path / "pretrained.npy"
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(InputError, match="its header promises"):
        geometry.VectorFile(path)


def test_chunk_size_keeps_memory_flat():
    assert geometry.chunk_elements(24, 256) == geometry.chunk_elements(24, 256)  # independent of parameters
    assert geometry.chunk_elements(500, 256) < geometry.chunk_elements(24, 256)
    assert 25 * geometry.chunk_elements(24, 256) * 24 <= 256 * 2**20


def constructed_table(tmp_path, pretrained):
    """Three datasets in two tasks, each dataset a tight cluster of three seeds around its own direction."""
    p, pinfo = pretrained
    rng = np.random.default_rng(6)
    directions = {"a": rng.normal(size=DIM), "b": rng.normal(size=DIM), "c": rng.normal(size=DIM)}
    directions["b"] = 0.6 * directions["a"] + 0.8 * directions["b"]  # same task as a: related direction
    names, tasks, vectors = [], [], []
    for dataset, task in (("a", "t1"), ("b", "t1"), ("c", "t2")):
        for seed in range(3):
            names.append(f"{dataset}-s{seed}")
            tasks.append(task)
            vectors.append((p + 0.05 * directions[dataset] + rng.normal(scale=0.03, size=DIM)).astype(np.float32))
    models = write_models(tmp_path, vectors, names, tasks)
    table, _, _ = table_for(models, pinfo)
    return table


def test_clustering_recovers_known_clusters(tmp_path, pretrained):
    table = constructed_table(tmp_path, pretrained)
    geo = matrices(table)
    nn = nearest_neighbour_agreement(geo)
    assert nn["value"].min() == 1.0
    stats, clusters = clustering(geo)
    by = {(r.group, r.statistic): r.value for r in stats.itertuples()}
    assert by[("dataset", "purity")] == 1.0 and by[("dataset", "adjusted_rand")] == 1.0
    assert by[("task", "purity")] == 1.0 and by[("task", "n_clusters")] == 2
    assert by[("dataset", "silhouette_true")] > 0.5
    summary = relation_summary(table)
    check = ordering_check(summary)
    assert check["holds"] is True
    assert check["means"]["same_dataset"] > check["means"]["same_task"] > check["means"]["other_task"]


def test_purity_and_projection_shapes(tmp_path, pretrained):
    assert purity(np.array([0, 0, 1, 1]), np.array([5, 5, 5, 7])) == 0.75
    table = constructed_table(tmp_path, pretrained)
    proj, stats = projections(matrices(table), seed=0)
    assert set(proj["method"]) == {"pca", "tsne"} and len(proj) == 2 * 10
    pca = proj[proj["method"] == "pca"].set_index("model_id")
    # an orthogonal projection never stretches a distance
    geo = matrices(table)
    xy = pca.loc[list(geo.models["model_id"]), ["x", "y"]].to_numpy()
    planar = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    assert (planar <= geo.euclidean + 1e-9).all()
    to_p = np.linalg.norm(xy - pca.loc["pretrained", ["x", "y"]].to_numpy(dtype=float), axis=1)
    assert (to_p <= geo.to_pretrained + 1e-9).all()
    assert stats.loc[stats["statistic"] == "explained_variance_1", "value"].iloc[0] > 0.3


def test_summarise_writes_every_output(tmp_path, pretrained):
    table = constructed_table(tmp_path, pretrained)
    table.to_parquet(tmp_path / "distances.parquet")
    outs = [tmp_path / n for n in ("summary.parquet", "clusters.parquet", "projection.parquet", "summary.md")]
    summary = summarise(tmp_path / "distances.parquet", *outs)
    assert set(summary["section"]) == {"relation", "nearest_neighbour", "clustering", "projection"}
    assert "**holds**" in outs[3].read_text()
