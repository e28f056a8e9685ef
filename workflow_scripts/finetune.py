"""Finetune the base model on one dataset with one seed; write weights, metrics and a training log.

CLI:
  python -m workflow_scripts.finetune --base-dir DIR --dataset-dir DIR --seed N --settings JSON
         --threads N --out-dir DIR
  python -m workflow_scripts.finetune --summarise METRICS_JSON... --out TABLE.parquet
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
import torch

from .devices import autocast, configure_threads, resolve_device, resolve_precision, seed_everything
from .evaluation import collate, encode, evaluate, majority_accuracy, read_split
from .io import InputError, atomic_path, read_json, run_cli, write_json, write_parquet
from .models import load_classifier

DEFAULTS = {
    "learning_rate": 5e-5,
    "weight_decay": 0.01,
    "warmup_ratio": 0.1,
    "steps": None,
    "epochs": 1.0,
    "batch_size": 16,
    "eval_batch_size": 64,
    "max_length": 128,
    "max_grad_norm": 1.0,
    "log_every": 10,
    "eval_every": 0,
    "device": "auto",
    "precision": "auto",
    "method": "full",
    "train_examples": None,
}
METHODS = ("full", "bitfit")


def steps_for(n_examples: int, batch_size: int, steps: int | None, epochs: float | None) -> int:
    if steps:
        return int(steps)
    return max(1, math.ceil(float(epochs) * n_examples / batch_size))


def _param_groups(model, weight_decay: float):
    # the usual BERT recipe: no weight decay on biases and LayerNorm weights
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def apply_method(model, method: str) -> int:
    """Freeze what the method does not train; return the number of trainable parameters.
    bitfit (Ben Zaken et al. 2022, as in the paper's centroid experiment): only the body's bias terms
    and the whole classification head train."""
    if method not in METHODS:
        raise InputError(f"finetune method {method!r} is not one of {list(METHODS)}")
    body = model.base_model_prefix + "."
    for name, param in model.named_parameters():
        param.requires_grad = method == "full" or not name.startswith(body) or name.endswith(".bias")
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def few_shot(encoded, count: int | None, seed: int):
    """A stratified sample of `count` training examples (the few-shot setting); all when None."""
    from .evaluation import Encoded
    from .normalise import stratified_take

    if not count or count >= len(encoded):
        return encoded
    index = np.sort(stratified_take(encoded.labels, int(count), np.random.default_rng(seed)))
    types = [encoded.token_type_ids[i] for i in index] if encoded.token_type_ids is not None else None
    return Encoded([encoded.input_ids[i] for i in index], types, encoded.labels[index])


def _batch_order(n: int, batch_size: int, steps: int, generator: torch.Generator):
    """Yield `steps` index batches, reshuffling at each epoch; the last partial batch of an epoch is kept."""
    done = 0
    epoch = 0
    while True:
        perm = torch.randperm(n, generator=generator).numpy()
        for start in range(0, n, batch_size):
            if done == steps:
                return
            yield epoch, perm[start : start + batch_size]
            done += 1
        epoch += 1


def finetune(base_dir, dataset_dir, seed: int, settings: Mapping, out_dir, threads: int = 1,
             tokenizer_dir=None, save_weights: bool = True, init: str | None = None) -> dict:
    """Finetune the model at `base_dir` (a pretrained model, or a centroid body saved with its config)
    with a fresh head; `tokenizer_dir` when the tokenizer lives elsewhere than `base_dir`."""
    from transformers import AutoTokenizer, get_linear_schedule_with_warmup

    cfg = {**DEFAULTS, **{k: v for k, v in settings.items() if v is not None}}
    unknown = set(settings) - set(DEFAULTS)
    if unknown:
        raise InputError(f"finetune settings: unknown key(s) {sorted(unknown)}")
    device = resolve_device(cfg["device"])
    dtype = resolve_precision(device, cfg["precision"])
    configure_threads(threads)
    seed_everything(seed)

    meta = read_json(Path(dataset_dir) / "meta.json")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir or base_dir)
    splits = {s: read_split(dataset_dir, s) for s in ("train", "validation", "test")}
    encoded = {s: encode(tokenizer, f, int(cfg["max_length"])) for s, f in splits.items()}
    for split, data in encoded.items():
        if len(data) and data.labels.max() >= meta["num_labels"]:
            raise InputError(f"{dataset_dir}/{split}.parquet: label {data.labels.max()} >= num_labels {meta['num_labels']}")
    # the few-shot sample depends on the seed, as a new draw of the training set would
    encoded["train"] = few_shot(encoded["train"], cfg["train_examples"], seed)
    train = encoded["train"]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    model = load_classifier(base_dir, meta["num_labels"], meta.get("labels")).to(device)
    trainable = apply_method(model, cfg["method"])
    model.train()
    steps = steps_for(len(train), int(cfg["batch_size"]), cfg["steps"], cfg["epochs"])
    optimizer = torch.optim.AdamW(_param_groups(model, float(cfg["weight_decay"])), lr=float(cfg["learning_rate"]))
    scheduler = get_linear_schedule_with_warmup(optimizer, int(round(cfg["warmup_ratio"] * steps)), steps)
    generator = torch.Generator().manual_seed(seed)

    print(f"finetune {meta['name']} seed {seed}: {steps} steps, batch {cfg['batch_size']}, "
          f"{len(train)} train examples, {cfg['method']} ({trainable:,} trainable parameters), device {device}, "
          f"autocast {dtype}, threads {threads}", file=sys.stderr)
    log_rows = []
    started = time.perf_counter()
    running, window, seen = 0.0, 0, 0
    for step, (epoch, index) in enumerate(_batch_order(len(train), int(cfg["batch_size"]), steps, generator), 1):
        batch = {k: v.to(device) for k, v in collate(train, index, pad_id).items()}
        with autocast(device, dtype):
            loss = model(**batch).loss
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), float(cfg["max_grad_norm"]))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        seen += len(index)
        running += loss.item()
        window += 1
        row = {"step": step, "epoch": epoch, "loss": loss.item(), "grad_norm": float(grad_norm),
               "learning_rate": scheduler.get_last_lr()[0], "examples": seen,
               "elapsed_s": time.perf_counter() - started, "val_accuracy": np.nan, "val_loss": np.nan}
        if cfg["eval_every"] and step % int(cfg["eval_every"]) == 0 and step < steps:
            val = evaluate(model, encoded["validation"], int(cfg["eval_batch_size"]), device, dtype, pad_id)
            row.update(val_accuracy=val["accuracy"], val_loss=val["loss"])
        log_rows.append(row)
        if step % int(cfg["log_every"]) == 0 or step == steps:
            elapsed = row["elapsed_s"]
            print(f"[{meta['name']} s{seed}] step {step}/{steps} ({100 * step / steps:.0f}%) "
                  f"loss {running / window:.4f} "
                  f"lr {row['learning_rate']:.2e} {elapsed / step:.2f} s/step eta {elapsed / step * (steps - step):.0f}s",
                  file=sys.stderr, flush=True)
            running, window = 0.0, 0
    train_seconds = time.perf_counter() - started

    model_id = f"{meta['name']}-s{seed}" if init is None else f"{meta['name']}-from-{init}-s{seed}"
    metrics = {"dataset": meta["name"], "task": meta["task"], "seed": seed, "model_id": model_id, "init": init,
               "trainable_parameters": trainable, "steps": steps, "train_examples": len(train), "train_seconds": train_seconds,
               "device": str(device), "autocast": str(dtype) if dtype else "float32", "settings": cfg}
    for split in ("validation", "test"):
        result = evaluate(model, encoded[split], int(cfg["eval_batch_size"]), device, dtype, pad_id)
        metrics[split] = {**result, "majority_accuracy": majority_accuracy(train.labels, encoded[split].labels)}
    log_rows[-1].update(val_accuracy=metrics["validation"]["accuracy"], val_loss=metrics["validation"]["loss"])
    print(f"[{meta['name']} s{seed}] validation acc {metrics['validation']['accuracy']:.4f} "
          f"test acc {metrics['test']['accuracy']:.4f} (majority {metrics['test']['majority_accuracy']:.4f})",
          file=sys.stderr)
    if save_weights:
        save_model(model, out_dir)
    write_parquet(Path(out_dir) / "train_log.parquet", pd.DataFrame(log_rows))
    write_json(Path(out_dir) / "metrics.json", metrics)
    return metrics


def save_model(model, out_dir) -> None:
    """Save config.json and model.safetensors (never pickle), each renamed into place when whole."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(".save-*"):  # left by a killed attempt at this job
        shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=".save-", dir=out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        for name in ("config.json", "model.safetensors"):
            if not (Path(tmp) / name).is_file():
                raise RuntimeError(f"save_pretrained did not write {name}")
            with atomic_path(out_dir / name) as part:
                shutil.move(Path(tmp) / name, part)


def summarise(metrics_files: list[str], out: str | Path) -> pd.DataFrame:
    """One row per finetuned model: dataset, task, seed, accuracies and the majority baseline."""
    rows = []
    for path in metrics_files:
        m = read_json(path)
        rows.append({"model_id": m["model_id"], "dataset": m["dataset"], "task": m["task"], "seed": m["seed"],
                     "steps": m["steps"], "train_seconds": m["train_seconds"],
                     "val_accuracy": m["validation"]["accuracy"], "test_accuracy": m["test"]["accuracy"],
                     "test_loss": m["test"]["loss"], "test_majority_accuracy": m["test"]["majority_accuracy"],
                     "test_n": m["test"]["n"]})
    frame = pd.DataFrame(rows).sort_values(["task", "dataset", "seed"]).reset_index(drop=True)
    write_parquet(out, frame)
    return frame


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-dir")
    parser.add_argument("--dataset-dir")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--settings", default="{}", help="finetune settings as JSON")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out-dir")
    parser.add_argument("--tokenizer-dir", help="where the tokenizer is, when not in --base-dir (a centroid)")
    parser.add_argument("--init", help="name of the starting point, recorded in metrics (centroid runs)")
    parser.add_argument("--no-weights", action="store_true", help="write metrics and the log only")
    parser.add_argument("--summarise", nargs="+", metavar="METRICS_JSON")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    if args.summarise:
        print(summarise(args.summarise, args.out).to_string(index=False), file=sys.stderr)
        return
    finetune(args.base_dir, args.dataset_dir, args.seed, json.loads(args.settings), args.out_dir, args.threads,
             tokenizer_dir=args.tokenizer_dir, save_weights=not args.no_weights, init=args.init)


if __name__ == "__main__":
    run_cli(main)
