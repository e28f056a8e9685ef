"""Flatten model bodies (everything but the classification head) into float32 vectors, and back.

The body is the model's `base_model` (for example `bert.*`); its parameters are laid end to end in
the order of `named_parameters()` of the pretrained model, recorded once in the manifest, so every
model of one base shares one layout.

CLI:
  python -m workflow_scripts.weights pretrained --base-dir DIR --out VECTOR.npy --manifest MANIFEST.json
  python -m workflow_scripts.weights model --model-dir DIR --manifest MANIFEST.json --out VECTOR.npy
         --model-id ID --dataset NAME --task TASK --seed N
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from .io import InputError, atomic_path, read_json, run_cli, write_json
from .models import load_classifier


def body_parameters(model) -> list[tuple[str, torch.Tensor]]:
    """(name, tensor) of the body's parameters, names relative to the body; buffers are not weights."""
    return list(model.base_model.named_parameters())


def build_manifest(model, base_name: str, base_sha256: str) -> dict:
    params, offset = [], 0
    for name, tensor in body_parameters(model):
        numel = tensor.numel()
        params.append({"name": name, "shape": list(tensor.shape), "offset": offset, "numel": numel})
        offset += numel
    return {"base_model": base_name, "base_sha256": base_sha256, "model_type": model.config.model_type,
            "body_prefix": model.base_model_prefix, "dtype": "float32", "total": offset, "parameters": params}


def flatten_model(model, manifest: Mapping) -> np.ndarray:
    """The body of an instantiated model as one float32 vector in the manifest's order."""
    params = dict(body_parameters(model))
    check_layout({n: tuple(t.shape) for n, t in params.items()}, manifest, f"{type(model).__name__}")
    out = np.empty(manifest["total"], dtype=np.float32)
    for p in manifest["parameters"]:
        out[p["offset"] : p["offset"] + p["numel"]] = params[p["name"]].detach().cpu().float().reshape(-1).numpy()
    return out


def check_layout(shapes: Mapping[str, tuple], manifest: Mapping, where: str) -> None:
    expected = {p["name"]: tuple(p["shape"]) for p in manifest["parameters"]}
    missing = sorted(set(expected) - set(shapes))
    extra = sorted(set(shapes) - set(expected))
    wrong = sorted(n for n in set(expected) & set(shapes) if tuple(shapes[n]) != expected[n])
    if missing or extra or wrong:
        detail = []
        if missing:
            detail.append(f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}")
        if extra:
            detail.append(f"unexpected {extra[:3]}{'...' if len(extra) > 3 else ''}")
        if wrong:
            detail.append(f"shape differs for {wrong[0]}: {tuple(shapes[wrong[0]])} vs manifest {expected[wrong[0]]}")
        raise InputError(f"{where}: body does not match the manifest of base model "
                         f"{manifest['base_model']!r} ({'; '.join(detail)})")


def flatten_safetensors(path: str | Path, manifest: Mapping) -> np.ndarray:
    """Flatten a saved finetuned model tensor by tensor, never holding the whole state dict."""
    from safetensors import SafetensorError, safe_open

    prefix = manifest["body_prefix"] + "."
    out = np.empty(manifest["total"], dtype=np.float32)
    try:
        with safe_open(str(path), framework="pt") as handle:
            keys = set(handle.keys())
            # the file also holds the head and possibly buffers: only the manifest's names are checked
            shapes = {p["name"]: tuple(handle.get_slice(prefix + p["name"]).get_shape())
                      for p in manifest["parameters"] if prefix + p["name"] in keys}
            check_layout(shapes, manifest, str(path))
            for p in manifest["parameters"]:
                tensor = handle.get_tensor(prefix + p["name"])
                out[p["offset"] : p["offset"] + p["numel"]] = tensor.float().reshape(-1).numpy()
    except SafetensorError as err:
        raise InputError(f"{path}: not a readable safetensors file ({err})") from None
    if not np.isfinite(out).all():
        raise InputError(f"{path}: the body holds NaN or infinite weights")
    return out


def unflatten_into(model, vector: np.ndarray, manifest: Mapping) -> None:
    """Write a body vector into an instantiated model in place (the head is left as it is)."""
    if vector.shape != (manifest["total"],):
        raise InputError(f"body vector has shape {vector.shape}, the manifest expects ({manifest['total']},)")
    params = dict(body_parameters(model))
    check_layout({n: tuple(t.shape) for n, t in params.items()}, manifest, type(model).__name__)
    with torch.no_grad():
        for p in manifest["parameters"]:
            target = params[p["name"]]
            chunk = torch.from_numpy(np.ascontiguousarray(vector[p["offset"] : p["offset"] + p["numel"]]))
            target.copy_(chunk.reshape(target.shape).to(dtype=target.dtype, device=target.device))


def save_vector(path: str | Path, vector: np.ndarray, info: Mapping | None = None) -> dict:
    """Write the vector and its sidecar `<name>.json` (ids, sha256 of the vector's bytes, size, norm)."""
    import hashlib

    vector = np.ascontiguousarray(vector, dtype=np.float32)
    sidecar = {**(info or {}), "sha256": hashlib.sha256(memoryview(vector).cast("B")).hexdigest(),
               "numel": int(vector.size), "norm": float(np.linalg.norm(vector.astype(np.float64)))}
    with atomic_path(path) as part:
        with open(part, "wb") as handle:
            np.save(handle, vector)
    write_json(Path(path).with_suffix(".json"), sidecar)
    return sidecar


def load_vector(path: str | Path, manifest: Mapping | None = None) -> np.ndarray:
    """Memory-map a body vector; refuse one whose length differs from the manifest."""
    try:
        vector = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: not a readable .npy vector ({err})") from None
    if manifest is not None and vector.shape != (manifest["total"],):
        raise InputError(f"{path}: vector length {vector.shape} differs from the manifest's {manifest['total']}")
    return vector


def weighted_sum(paths, weights, divisor: float = 1.0, chunk: int = 1 << 22) -> np.ndarray:
    """(sum_i w_i v_i) / divisor over memory-mapped vectors, accumulated in float64 chunk by chunk, so
    memory holds one chunk per vector, never the bodies. Weight 1 on one vector and 0 elsewhere (divisor 1)
    returns that vector bit for bit."""
    if len(paths) != len(weights) or not paths:
        raise InputError(f"weighted sum: {len(paths)} vectors and {len(weights)} weights")
    vectors = [load_vector(p) for p in paths]
    numel = vectors[0].shape[0]
    for path, vector in zip(paths, vectors):
        if vector.shape != (numel,):
            raise InputError(f"{path}: vector length {vector.shape[0]:,} differs from {paths[0]}'s {numel:,}")
    used = [(v, float(w)) for v, w in zip(vectors, weights) if w != 0]
    out = np.empty(numel, dtype=np.float32)
    for start in range(0, numel, chunk):
        stop = min(numel, start + chunk)
        acc = np.zeros(stop - start, dtype=np.float64)
        for vector, weight in used:
            acc += weight * vector[start:stop].astype(np.float64)
        out[start:stop] = acc / divisor
    return out


def flatten_pretrained(base_dir: str | Path, out: str | Path, manifest_out: str | Path) -> dict:
    info = read_json(Path(base_dir) / "source.json")
    # the same class as the finetuned models, so the body's parameter names and order agree
    model = load_classifier(base_dir, num_labels=2)
    manifest = build_manifest(model, info["name"], info["weights_sha256"])
    save_vector(out, flatten_model(model, manifest), {"model_id": "pretrained", "dataset": None, "task": None, "seed": None})
    write_json(manifest_out, manifest)
    print(f"pretrained body: {manifest['total']:,} parameters in {len(manifest['parameters'])} tensors", file=sys.stderr)
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["pretrained", "model"])
    parser.add_argument("--base-dir")
    parser.add_argument("--model-dir")
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--out", required=True, help="the .npy vector; its sidecar .json is written beside it")
    parser.add_argument("--model-id")
    parser.add_argument("--dataset")
    parser.add_argument("--task")
    parser.add_argument("--seed", type=int)
    args = parser.parse_args(argv)
    if args.kind == "pretrained":
        flatten_pretrained(args.base_dir, args.out, args.manifest)
        return
    manifest = read_json(args.manifest)
    vector = flatten_safetensors(Path(args.model_dir) / "model.safetensors", manifest)
    info = save_vector(args.out, vector, {"model_id": args.model_id, "dataset": args.dataset, "task": args.task,
                                          "seed": args.seed})
    print(f"{args.model_dir}: body of {vector.size:,} parameters, norm {info['norm']:.4f}", file=sys.stderr)


if __name__ == "__main__":
    run_cli(main)
