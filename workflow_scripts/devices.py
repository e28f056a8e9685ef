"""Device, precision and thread settings shared by every stage that runs a model."""
from __future__ import annotations

import contextlib
import os

import torch

from .io import InputError


def resolve_device(requested: str = "auto") -> torch.device:
    """`auto` takes CUDA when there is a GPU, else the CPU; an explicit `cuda` without a GPU is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
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
