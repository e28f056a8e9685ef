"""Benchmark the streaming Gram pass against the machine's floor and against the obvious approach.

On synthetic float32 vectors shaped like real bodies (default: 24 models of 22.7M parameters, the
default study's MiniLM, then 24 of 124.6M, roberta-base's body), it times in one process:
  read     a plain sequential read of the same files (readinto a fixed buffer): the floor
  stream   workflow_scripts.geometry.gram_stream: every pair's dot product in one float64 pass
  naive    load every vector, loop over pairs with numpy (cosine of task vectors, Euclidean of bodies)
both cold (each file dropped from the page cache first, as at paper scale where vectors outrun memory)
and warm (files in the page cache), and prints the ratios. Peak memory (VmHWM, the peak resident set) of each
approach is measured in a child process of its own, since it only grows within a process.

  python benchmarks/distances.py [--models 24] [--params 22713216 124645632] [--dir /tmp/kr-bench]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from workflow_scripts.geometry import VectorFile, gram_stream  # noqa: E402
from workflow_scripts.weights import save_vector  # noqa: E402


def make_vectors(folder: Path, models: int, params: int, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pretrained = rng.normal(scale=0.05, size=params).astype(np.float32)
    save_vector(folder / "pretrained.npy", pretrained)
    paths = []
    for k in range(models):
        delta = rng.normal(scale=5e-4, size=params).astype(np.float32)
        path = folder / f"m{k:03d}.npy"
        save_vector(path, pretrained + delta)
        paths.append(path)
    return paths


def evict(paths) -> None:
    for p in paths:
        f = VectorFile(p)
        f.evict()
        f.close()


def read_floor(paths) -> None:
    buffer = bytearray(16 << 20)
    view = memoryview(buffer)
    for p in paths:
        with open(p, "rb", buffering=0) as handle:
            while handle.readinto(view):
                pass


def stream(paths, pretrained) -> np.ndarray:
    gram, _ = gram_stream(paths, pretrained)
    return gram


def naive(paths, pretrained) -> np.ndarray:
    vectors = [np.load(p) for p in paths]
    p = np.load(pretrained).astype(np.float64)
    n = len(vectors)
    gram = np.zeros((n, n))
    for i in range(n):
        ti = vectors[i].astype(np.float64) - p
        gram[i, i] = ti @ ti
        for j in range(i + 1, n):
            tj = vectors[j].astype(np.float64) - p
            gram[i, j] = gram[j, i] = ti @ tj
            np.linalg.norm(vectors[i].astype(np.float64) - vectors[j])  # the Euclidean distance, as such code does
    return gram


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def child_peak_mb(mode: str, folder: Path) -> float:
    """Run one approach in a fresh interpreter and return its peak RSS in MB."""
    proc = subprocess.run([sys.executable, __file__, "--measure", mode, "--dir", str(folder)],
                          capture_output=True, text=True, check=True)
    return float(proc.stdout.strip().splitlines()[-1])


def measure(mode: str, folder: Path) -> None:
    paths = sorted(folder.glob("m*.npy"))
    pretrained = folder / "pretrained.npy"
    {"read": lambda: read_floor([*paths, pretrained]), "stream": lambda: stream(paths, pretrained),
     "naive": lambda: naive(paths, pretrained)}[mode]()
    # VmHWM, unlike ru_maxrss, starts afresh at exec, so the parent's memory does not leak into it
    status = Path("/proc/self/status").read_text()
    print(int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024)


def run_size(folder: Path, models: int, params: int, naive_limit_gb: float) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    paths = make_vectors(folder, models, params)
    pretrained = folder / "pretrained.npy"
    everything = [*paths, pretrained]
    gb = sum(p.stat().st_size for p in everything) / 1e9
    print(f"\n== {models} models x {params:,} parameters: {gb:.2f} GB of vectors "
          f"(written in {time.perf_counter() - started:.0f}s)")

    evict(everything)
    cold_read, _ = timed(read_floor, everything)
    evict(everything)
    cold_stream, gram = timed(stream, paths, pretrained)
    read_floor(everything)  # warm the page cache
    warm_read, _ = timed(read_floor, everything)
    warm_stream, _ = timed(stream, paths, pretrained)
    print(f"cold: read {cold_read:6.2f}s  stream {cold_stream:6.2f}s  stream/read = {cold_stream / cold_read:.2f}x")
    print(f"warm: read {warm_read:6.2f}s  stream {warm_stream:6.2f}s  stream/read = {warm_stream / warm_read:.2f}x")

    naive_gb = gb * 1.0 + 3 * params * 8 / 1e9
    if naive_gb <= naive_limit_gb:
        naive_time, naive_gram = timed(naive, paths, pretrained)
        err = np.max(np.abs(gram - naive_gram) / np.abs(naive_gram).max())
        print(f"warm: naive {naive_time:6.2f}s  naive/stream = {naive_time / warm_stream:.1f}x  "
              f"(max difference {err:.1e} of the largest entry)")
    else:
        print(f"naive: skipped, it would hold about {naive_gb:.1f} GB (limit {naive_limit_gb} GB)")

    peaks = {mode: child_peak_mb(mode, folder) for mode in ("read", "stream")}
    if naive_gb <= naive_limit_gb:
        peaks["naive"] = child_peak_mb("naive", folder)
    print("peak memory (peak RSS): " + "  ".join(f"{k} {v:,.0f} MB" for k, v in peaks.items()))
    shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=24)
    parser.add_argument("--params", type=int, nargs="+", default=[22_713_216, 124_645_632])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/kr-bench-distances"))
    parser.add_argument("--naive-limit-gb", type=float, default=6.0, help="skip the naive approach above this memory")
    parser.add_argument("--measure", choices=["read", "stream", "naive"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args.dir)
        return
    print(f"threads: {os.cpu_count()} cores; numpy {np.__version__}")
    for params in args.params:
        run_size(args.dir, args.models, params, args.naive_limit_gb)


if __name__ == "__main__":
    main()
