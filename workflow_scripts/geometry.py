"""Exact, streaming pairwise geometry of model bodies: Gram blocks of task vectors, then distances.

Every metric derives from the Gram matrix of task vectors (body minus pretrained body), accumulated
in float64 over chunks read straight from the .npy files, so memory grows with the number of models
in a block, never with the number of parameters:
  cosine(a, b)     = G_ab / sqrt(G_aa G_bb)                 (task vectors)
  euclidean(a, b)  = sqrt(G_aa + G_bb - 2 G_ab)              (bodies: the pretrained body cancels)
  euclidean(a, p)  = sqrt(G_aa)                              (distance to the pretrained body)
Where the expansion for euclidean(a, b) cancels (close models), the squared distance is instead
accumulated directly from (a - b) in the same pass, so every value matches a float64 computation.

Dot products are cached by the content (sha256) of both vectors and of the pretrained vector: adding
models computes only the pairs that involve them.

CLI:
  python -m workflow_scripts.geometry block --models M.json... [--columns M.json...] --pretrained P.json
         --cache CACHE --out BLOCK.parquet
  python -m workflow_scripts.geometry distances --blocks BLOCK.parquet... --models M.json... --pretrained P.json
         --out DISTANCES.parquet --cache-out CACHE
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd

from .io import InputError, read_json, run_cli, write_parquet

CACHE_COLUMNS = ["key_a", "key_b", "key_pretrained", "dot", "sqdist_direct"]


class VectorFile:
    """A float32 body vector in a .npy file, read by ranges into caller-owned buffers (no mmap residue)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            with open(self.path, "rb") as handle:
                version = np.lib.format.read_magic(handle)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, fortran, dtype = read_header(handle)
                self.offset = handle.tell()
        except FileNotFoundError:
            raise InputError(f"{self.path}: vector file not found") from None
        except (ValueError, OSError) as err:
            raise InputError(f"{self.path}: not a readable .npy vector ({err})") from None
        if dtype != np.float32 or len(shape) != 1:
            raise InputError(f"{self.path}: expected a 1-D float32 vector, found {dtype} of shape {shape}")
        self.size = int(shape[0])
        expected = self.offset + 4 * self.size
        if os.path.getsize(self.path) != expected:
            raise InputError(f"{self.path}: file is {os.path.getsize(self.path)} bytes, its header promises {expected}")
        self.fd = os.open(self.path, os.O_RDONLY)
        os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)  # a larger kernel read-ahead window

    def read(self, start: int, out: np.ndarray) -> None:
        view = memoryview(out).cast("B")
        got = os.preadv(self.fd, [view], self.offset + 4 * start)
        if got != view.nbytes:
            raise InputError(f"{self.path}: short read at element {start}")

    def evict(self) -> None:
        """Drop this file from the page cache (benchmarks measure cold reads with it); dirty pages are flushed first."""
        os.fsync(self.fd)
        os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_DONTNEED)

    def close(self) -> None:
        os.close(self.fd)


def open_vectors(paths: Sequence[str | Path]) -> list[VectorFile]:
    files = [VectorFile(p) for p in paths]
    sizes = {f.size for f in files}
    if len(sizes) > 1:
        detail = ", ".join(f"{f.path.name}: {f.size}" for f in files[:6])
        raise InputError(f"vectors of different lengths cannot be compared ({detail}); were they flattened from one base model?")
    return files


MAX_CHUNK = 1 << 18  # larger chunks only add cache misses to the Gram product


def chunk_elements(n_vectors: int, memory_mb: float) -> int:
    """Elements per chunk so that the double-buffered float32 reads and float64 task vectors fit the budget."""
    per_element = (n_vectors + 1) * (4 + 8) * 2  # float32 reads and float64 task vectors, double-buffered
    return max(4096, min(MAX_CHUNK, int(memory_mb * 2**20 / per_element)))


def stream_chunks(files: Sequence[VectorFile], chunk: int,
                  transform: Callable[[np.ndarray, int], np.ndarray] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (start, rows x width block), reading (and transforming) the next chunk in a thread meanwhile.

    `transform(block, slot)` runs in the reader thread on the float32 block; `slot` (0 or 1) names the
    double buffer, so a transform can write into buffers of its own without clobbering the block in use.
    """
    size = files[0].size
    buffers = [np.empty((len(files), chunk), dtype=np.float32) for _ in range(2)]

    def load(start: int, slot: int) -> np.ndarray:
        width = min(chunk, size - start)
        buf = buffers[slot]
        for row, f in enumerate(files):
            f.read(start, buf[row, :width])
        return transform(buf[:, :width], slot) if transform else buf[:, :width]

    starts = list(range(0, size, chunk))
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(load, starts[0], 0) if starts else None
        for i, start in enumerate(starts):
            ready = pending.result()
            pending = pool.submit(load, starts[i + 1], (i + 1) % 2) if i + 1 < len(starts) else None
            yield start, ready


def gram_stream(paths: Sequence[str | Path], pretrained: str | Path, rows: Sequence[int] | None = None,
                memory_mb: float = 256) -> tuple[np.ndarray, np.ndarray]:
    """Dot products of the task vectors of `paths[rows]` with those of all `paths`, in one pass.

    Returns (G: len(rows) x len(paths), squared norms of all task vectors), both float64.
    """
    files = open_vectors([*paths, pretrained])
    rows = list(range(len(paths))) if rows is None else list(rows)
    try:
        chunk = chunk_elements(len(files), memory_mb)
        gram = np.zeros((len(rows), len(paths)))
        sqnorm = np.zeros(len(paths))
        task = [np.empty((len(paths), chunk)) for _ in range(2)]
        every_row = rows == list(range(len(paths)))
        others = sorted(set(range(len(paths))) - set(rows))

        def to_task_vectors(block: np.ndarray, slot: int) -> np.ndarray:
            # float32 - float32 is exact in float64, so task vectors carry no rounding of their own
            t = task[slot][:, : block.shape[1]]
            np.subtract(block[:-1], block[-1], out=t, dtype=np.float64)
            return t

        for _, t in stream_chunks(files, chunk, to_task_vectors):
            gram += (t if every_row else t[rows]) @ t.T
            if others:
                sqnorm[others] += np.einsum("ij,ij->i", t[others], t[others])
        sqnorm[rows] = gram[np.arange(len(rows)), rows]
        return gram, sqnorm
    finally:
        for f in files:
            f.close()


def direct_sqdist(paths: Sequence[str | Path], pairs: Sequence[tuple[int, int]], memory_mb: float = 256) -> np.ndarray:
    """Squared Euclidean distances ||a - b||^2 accumulated from the differences, in float64, in one pass."""
    files = open_vectors(paths)
    try:
        chunk = chunk_elements(len(files), memory_mb)
        first = np.array([a for a, _ in pairs], dtype=int)
        second = np.array([b for _, b in pairs], dtype=int)
        out = np.zeros(len(pairs))
        for _, block in stream_chunks(files, chunk):
            diff = block[first].astype(np.float64) - block[second]
            out += np.einsum("ij,ij->i", diff, diff)
        return out
    finally:
        for f in files:
            f.close()


# --------------------------------------------------------------------------- blocks and cache

def load_cache(path: str | Path | None) -> dict[tuple[str, str, str], tuple[float, float]]:
    """Content-keyed dot products from earlier runs: (key_a, key_b, key_pretrained) -> (dot, sqdist_direct)."""
    if not path or not Path(path).is_file():
        return {}
    try:
        frame = pd.read_parquet(path, columns=CACHE_COLUMNS)
    except Exception as err:  # a damaged cache is recomputed, never trusted
        print(f"warning: ignoring unreadable cache {path}: {err}", file=sys.stderr)
        return {}
    return {(a, b, p): (d, s) for a, b, p, d, s in frame.itertuples(index=False)}


def _pair_key(key_a: str, key_b: str) -> tuple[str, str]:
    return (key_a, key_b) if key_a <= key_b else (key_b, key_a)


def compute_block(models_a: Sequence[dict], models_b: Sequence[dict], pretrained: dict, cache: dict,
                  exact_threshold: float = 1e-4, memory_mb: float = 256) -> tuple[pd.DataFrame, int]:
    """Dot products of every pair (a, b), a from `models_a`, b from `models_b`, reusing `cache`.

    When both lists are the same block, each unordered pair (and each model with itself) appears once.
    Pairs whose Euclidean distance would cancel in the norm expansion also get a direct squared distance.
    Returns the block table and the number of pairs computed rather than taken from the cache.
    """
    union = list({m["model_id"]: m for m in [*models_a, *models_b]}.values())
    index = {m["model_id"]: i for i, m in enumerate(union)}
    diagonal = [m["model_id"] for m in models_a] == [m["model_id"] for m in models_b]
    pairs = [(index[a["model_id"]], index[b["model_id"]])
             for ia, a in enumerate(models_a) for ib, b in enumerate(models_b) if not diagonal or ia <= ib]
    keys = [m["sha256"] for m in union]
    kp = pretrained["sha256"]
    found = {pair: cache.get((*_pair_key(keys[pair[0]], keys[pair[1]]), kp)) for pair in pairs}
    missing = [pair for pair, hit in found.items() if hit is None]
    if missing:
        paths = [m["vector"] for m in union]
        rows = sorted({i for i, _ in missing})
        gram, sqnorm = gram_stream(paths, pretrained["vector"], rows=rows, memory_mb=memory_mb)
        where = {r: k for k, r in enumerate(rows)}
        dots = {(i, j): gram[where[i], j] for i, j in missing}
        # G_aa + G_bb - 2 G_ab cancels for close models: measure those distances directly
        close = [(i, j) for i, j in missing
                 if i != j and sqnorm[i] + sqnorm[j] - 2 * dots[(i, j)] < exact_threshold * (sqnorm[i] + sqnorm[j])]
        direct = dict(zip(close, direct_sqdist(paths, close, memory_mb))) if close else {}
        for pair in missing:
            found[pair] = (dots[pair], direct.get(pair, np.nan))
    records = [{"model_a": union[i]["model_id"], "model_b": union[j]["model_id"], "key_a": keys[i], "key_b": keys[j],
                "key_pretrained": kp, "dot": float(dot), "sqdist_direct": float(sq)}
               for (i, j), (dot, sq) in found.items()]
    return pd.DataFrame.from_records(records, columns=["model_a", "model_b", *CACHE_COLUMNS]), len(missing)


def block(rows_json: Sequence[str], cols_json: Sequence[str], pretrained_json: str, cache: str | None,
          out: str | Path, exact_threshold: float, memory_mb: float) -> None:
    models_a = [describe(p) for p in rows_json]
    models_b = [describe(p) for p in cols_json]
    started = time.perf_counter()
    table, computed = compute_block(models_a, models_b, describe(pretrained_json), load_cache(cache),
                                    exact_threshold, memory_mb)
    write_parquet(out, table)
    print(f"block {len(models_a)} x {len(models_b)} models: {len(table)} pairs, {computed} computed, "
          f"{len(table) - computed} from the cache, {time.perf_counter() - started:.1f}s", file=sys.stderr)


def describe(model_json: str | Path) -> dict:
    """A model's sidecar (model id, dataset, task, seed, sha256 of its vector) plus the vector's path."""
    info = read_json(model_json)
    missing = {"model_id", "sha256"} - set(info)
    if missing:
        raise InputError(f"{model_json}: missing {sorted(missing)}")
    return {**info, "vector": str(Path(model_json).with_suffix(".npy"))}


# --------------------------------------------------------------------------- distances

def relation(a: dict, b: dict) -> str:
    if a["model_id"] == "pretrained" or b["model_id"] == "pretrained":
        return "to_pretrained"
    if a["dataset"] == b["dataset"]:
        return "same_dataset"
    if a["task"] == b["task"]:
        return "same_task"
    return "other_task"


def gram_matrix(blocks: pd.DataFrame, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Assemble the symmetric Gram matrix and the direct squared distances (NaN where not measured)."""
    index = {m: i for i, m in enumerate(ids)}
    n = len(ids)
    gram = np.full((n, n), np.nan)
    direct = np.full((n, n), np.nan)
    ia, ib = blocks["model_a"].map(index), blocks["model_b"].map(index)
    if ia.isna().any() or ib.isna().any():
        unknown = blocks.loc[ia.isna() | ib.isna(), ["model_a", "model_b"]].iloc[0].tolist()
        raise InputError(f"Gram blocks name models that are not among the inputs: {unknown}")
    ia, ib = ia.to_numpy(int), ib.to_numpy(int)
    for arr, col in ((gram, "dot"), (direct, "sqdist_direct")):
        arr[ia, ib] = blocks[col].to_numpy()
        arr[ib, ia] = blocks[col].to_numpy()
    if np.isnan(gram).any():
        a, b = np.argwhere(np.isnan(gram))[0]
        raise InputError(f"no Gram entry for the pair ({ids[a]}, {ids[b]}); are all blocks listed?")
    return gram, direct


def distance_table(models: Sequence[dict], pretrained: dict, gram: np.ndarray, direct: np.ndarray) -> pd.DataFrame:
    """Long table: one row per (pair, metric), each side's dataset, task and seed beside it."""
    sq = np.diag(gram).copy()
    records = []

    def add(a: dict, b: dict, metric: str, value: float) -> None:
        records.append({"model_a": a["model_id"], "model_b": b["model_id"], "metric": metric, "value": float(value),
                        "relation": relation(a, b),
                        "dataset_a": a.get("dataset"), "task_a": a.get("task"), "seed_a": a.get("seed"),
                        "dataset_b": b.get("dataset"), "task_b": b.get("task"), "seed_b": b.get("seed")})

    for i, a in enumerate(models):
        add(a, pretrained, "euclidean", np.sqrt(sq[i]))
        for j in range(i + 1, len(models)):
            b = models[j]
            denom = np.sqrt(sq[i] * sq[j])
            add(a, b, "cosine", gram[i, j] / denom if denom > 0 else np.nan)
            d2 = direct[i, j] if np.isfinite(direct[i, j]) else sq[i] + sq[j] - 2 * gram[i, j]
            add(a, b, "euclidean", np.sqrt(max(d2, 0.0)))
    frame = pd.DataFrame.from_records(records)
    frame["seed_a"] = frame["seed_a"].astype("Int64")
    frame["seed_b"] = frame["seed_b"].astype("Int64")
    return frame


def distances(block_files: Sequence[str], model_jsons: Sequence[str], pretrained_json: str, out: str | Path,
              cache_out: str | Path | None) -> pd.DataFrame:
    models = [describe(p) for p in model_jsons]
    pretrained = describe(pretrained_json)
    blocks = pd.concat([pd.read_parquet(p) for p in block_files], ignore_index=True)
    stale = blocks["key_pretrained"] != pretrained["sha256"]
    if stale.any():
        raise InputError(f"{block_files[0]}...: blocks were computed against another pretrained vector")
    blocks = blocks.drop_duplicates(["model_a", "model_b"])
    ids = [m["model_id"] for m in models]
    gram, direct = gram_matrix(blocks, ids)
    keys = {m["model_id"]: m["sha256"] for m in models}
    for row in blocks.itertuples(index=False):
        if keys[row.model_a] != row.key_a or keys[row.model_b] != row.key_b:
            raise InputError(f"Gram block entry ({row.model_a}, {row.model_b}) was computed from other vectors")
    table = distance_table(models, pretrained, gram, direct)
    write_parquet(out, table)
    if cache_out:
        cache = blocks.assign(pair=[_pair_key(a, b) for a, b in zip(blocks["key_a"], blocks["key_b"])])
        cache["key_a"], cache["key_b"] = zip(*cache.pop("pair"))
        write_parquet(cache_out, cache[CACHE_COLUMNS].drop_duplicates(["key_a", "key_b", "key_pretrained"]))
    print(f"distances: {len(models)} models, {len(table)} rows", file=sys.stderr)
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["block", "distances"])
    parser.add_argument("--models", nargs="+", required=True, help="sidecar JSON of each model's vector")
    parser.add_argument("--columns", nargs="*", default=None, help="block: the column models (default: --models)")
    parser.add_argument("--pretrained", required=True, help="sidecar JSON of the pretrained vector")
    parser.add_argument("--blocks", nargs="*", default=[])
    parser.add_argument("--cache", default=None, help="content-keyed dot products of earlier runs (read)")
    parser.add_argument("--cache-out", default=None)
    parser.add_argument("--exact-threshold", type=float, default=1e-4)
    parser.add_argument("--memory-mb", type=float, default=256)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.kind == "block":
        block(args.models, args.columns or args.models, args.pretrained, args.cache, args.out,
              args.exact_threshold, args.memory_mb)
    else:
        distances(args.blocks, args.models, args.pretrained, args.out, args.cache_out)


if __name__ == "__main__":
    run_cli(main)
