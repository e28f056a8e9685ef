"""Device, precision and thread settings shared by every stage that runs a model."""
from __future__ import annotations

import contextlib
import os

import torch

from .io import InputError


_CLAIMS: list = []  # open lock files: a claim lasts as long as the process


def claim_gpu(count: int, lock_dir: str | os.PathLike | None = None) -> int:
    """Index of a GPU no other job of this machine holds, claimed with an exclusive file lock, so parallel
    local jobs (Snakemake's gpu resource allows several when there are several GPUs) each get their own."""
    import fcntl
    import tempfile
    from pathlib import Path

    folder = Path(lock_dir or os.environ.get("KR_GPU_LOCK_DIR") or Path(tempfile.gettempdir()) / "kr-gpu-locks")
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        handle = open(folder / f"gpu{index}.lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        _CLAIMS.append(handle)
        return index
    raise InputError(f"all {count} GPUs of this machine are held by other jobs; set the profile's gpu resource "
                     f"limit to at most {count}")


def resolve_device(requested: str = "auto") -> torch.device:
    """`auto` takes a free GPU when there is one (SLURM's CUDA_VISIBLE_DEVICES shows a job only its own),
    else the CPU; an explicit `cuda` without a GPU is an error."""
    if requested == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        count = torch.cuda.device_count()
        return torch.device(f"cuda:{claim_gpu(count)}" if count > 1 else "cuda")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {requested!r} was requested (finetune.device) but torch sees no CUDA GPU; "
                         "use device: auto or cpu")
    if requested not in ("cpu",) and not requested.startswith("cuda"):
        raise InputError(f"device {requested!r} is not one of auto, cpu, cuda, cuda:N")
    return torch.device(requested)


def resolve_precision(device: torch.device, requested: str = "auto") -> torch.dtype | None:
    """The autocast dtype: bf16 on a GPU that supports it when `auto`, none (float32) on the CPU."""
    if requested == "fp32":
        return None
    if requested == "bf16":
        if device.type != "cuda":
            raise InputError("precision bf16 is only used on a GPU here; use precision: auto or fp32 on the CPU")
        return torch.bfloat16
    return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def configure_threads(threads: int) -> None:
    """Pin intra-op threads to what Snakemake granted, so parallel jobs do not oversubscribe the cores."""
    threads = max(1, int(threads))
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    # CPU kernels are deterministic with a fixed thread count; this also catches nondeterministic GPU ops
    torch.use_deterministic_algorithms(True, warn_only=True)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
