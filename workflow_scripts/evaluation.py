"""Tokenising, dynamic-padding batches and evaluation of a classification model on a split.

CLI (tokenised inputs of the generalized evaluation, cached per dataset, tokenizer and max length):
  python -m workflow_scripts.evaluation encode --base-dir DIR --dataset-dir DIR --max-length N
         --probe-train N --test N --seed N --out INPUTS.parquet
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .devices import autocast
from .io import InputError, atomic_path, read_json, run_cli
from .normalise import stratified_take


@dataclass
class Encoded:
    """Token ids of one split, unpadded, with their labels."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self.input_ids))


def read_split(dataset_dir: str | Path, split: str) -> pd.DataFrame:
    path = Path(dataset_dir) / f"{split}.parquet"
    try:
        frame = pd.read_parquet(path)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except Exception as err:
        raise InputError(f"{path}: unreadable Parquet ({err})") from None
    if "text" not in frame.columns or "label" not in frame.columns:
        raise InputError(f"{path}: needs text and label columns, has {list(frame.columns)}")
    return frame


def encode(tokenizer, frame: pd.DataFrame, max_length: int) -> Encoded:
    pair = frame["text_pair"].tolist() if "text_pair" in frame.columns else None
    enc = tokenizer(frame["text"].tolist(), pair, truncation=True, max_length=max_length, padding=False)
    return Encoded(enc["input_ids"], enc.get("token_type_ids"), frame["label"].to_numpy(dtype=np.int64))


def collate(data: Encoded, index: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad one batch to its own longest sequence (dynamic padding)."""
    width = max(len(data.input_ids[i]) for i in index)
    ids = torch.full((len(index), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(index), width), dtype=torch.long)
    types = torch.zeros((len(index), width), dtype=torch.long) if data.token_type_ids is not None else None
    for row, i in enumerate(index):
        seq = data.input_ids[i]
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
        if types is not None:
            types[row, : len(seq)] = torch.tensor(data.token_type_ids[i])
    batch = {"input_ids": ids, "attention_mask": mask, "labels": torch.from_numpy(data.labels[list(index)])}
    if types is not None:
        batch["token_type_ids"] = types
    return batch


def length_sorted_batches(data: Encoded, batch_size: int) -> Iterator[np.ndarray]:
    """Batches of similar length, longest first, so padding is minimal and memory peaks early."""
    order = np.argsort(-data.lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


@torch.inference_mode()
def evaluate(model, data: Encoded, batch_size: int, device: torch.device, dtype, pad_id: int) -> dict:
    """Accuracy and mean cross-entropy of the model's own head on one encoded split."""
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    for index in length_sorted_batches(data, batch_size):
        batch = {k: v.to(device) for k, v in collate(data, index, pad_id).items()}
        labels = batch.pop("labels")
        with autocast(device, dtype):
            logits = model(**batch).logits
        logits = logits.float()
        total_loss += F.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(-1) == labels).sum().item()
    model.train(was_training)
    n = len(data)
    return {"accuracy": correct / n, "loss": total_loss / n, "n": n}


def majority_accuracy(train_labels: np.ndarray, eval_labels: np.ndarray) -> float:
    """Accuracy of always predicting the most frequent training label: the baseline to beat."""
    majority = np.bincount(train_labels).argmax()
    return float(np.mean(eval_labels == majority))


@dataclass
class EvalInputs:
    """Tokenised probe-training sample and test split of one dataset."""

    dataset: str
    num_labels: int
    train: Encoded
    test: Encoded


META_KEY = b"knowledge_region"


def probe_sample(dataset_dir, probe_train: int, test: int, seed: int) -> dict[str, pd.DataFrame]:
    """Stratified samples of `probe_train` training and `test` test examples (0: all)."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, cap in (("train", probe_train), ("test", test)):
        frame = read_split(dataset_dir, split)
        if frame.empty:
            raise InputError(f"{dataset_dir}/{split}.parquet: no examples to evaluate on")
        if cap and len(frame) > cap:
            frame = frame.iloc[np.sort(stratified_take(frame["label"].to_numpy(), cap, rng))]
        out[split] = frame.reset_index(drop=True)
    return out


def encode_inputs(base_dir, dataset_dir, max_length: int, probe_train: int, test: int, seed: int):
    """Tokenise the probe sample; returns the table and what it was made from (dataset, label count,
    tokenizer, max length)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    meta = read_json(Path(dataset_dir) / "meta.json")
    parts = []
    for split, frame in probe_sample(dataset_dir, probe_train, test, seed).items():
        enc = encode(tokenizer, frame, max_length)
        part = pd.DataFrame({"split": split, "input_ids": [np.asarray(x, dtype=np.int32) for x in enc.input_ids],
                             "label": enc.labels})
        if enc.token_type_ids is not None:
            part["token_type_ids"] = [np.asarray(x, dtype=np.int8) for x in enc.token_type_ids]
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    if out["label"].max() >= meta["num_labels"]:
        raise InputError(f"{dataset_dir}: label {out['label'].max()} >= num_labels {meta['num_labels']}")
    info = {"dataset": meta["name"], "num_labels": int(meta["num_labels"]), "max_length": int(max_length),
            "tokenizer": Path(base_dir).name, "seed": int(seed)}
    return out, info


def write_inputs(path, frame: pd.DataFrame, info: Mapping) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: json.dumps(info).encode()})
    with atomic_path(path) as part:
        pq.write_table(table, part)


def read_inputs(path) -> EvalInputs:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
        info = json.loads((table.schema.metadata or {})[META_KEY])
    except KeyError:
        raise InputError(f"{path}: not an evaluation-inputs table (no {META_KEY.decode()} metadata)") from None
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user-facing problem
        raise InputError(f"{path}: unreadable evaluation inputs ({err})") from None
    frame = table.to_pandas()
    missing = {"split", "input_ids", "label"} - set(frame.columns)
    if missing:
        raise InputError(f"{path}: missing column(s) {sorted(missing)}")
    dataset, num_labels = info["dataset"], info["num_labels"]

    def part(split):
        sub = frame[frame["split"] == split]
        if sub.empty:
            raise InputError(f"{path}: no {split} rows")
        types = [x.tolist() for x in sub["token_type_ids"]] if "token_type_ids" in sub.columns else None
        return Encoded([x.tolist() for x in sub["input_ids"]], types, sub["label"].to_numpy(dtype=np.int64))

    return EvalInputs(dataset, int(num_labels), part("train"), part("test"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["encode"])
    parser.add_argument("--base-dir", required=True)
    parser.add_argument("--dataset-dir", required=True)
    parser.add_argument("--max-length", type=int, required=True)
    parser.add_argument("--probe-train", type=int, required=True)
    parser.add_argument("--test", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    frame, info = encode_inputs(args.base_dir, args.dataset_dir, args.max_length, args.probe_train, args.test,
                                args.seed)
    write_inputs(args.out, frame, info)
    counts = frame["split"].value_counts().to_dict()
    print(f"{args.dataset_dir}: {counts.get('train', 0)} probe-training and {counts.get('test', 0)} test examples, "
          f"mean length {frame['input_ids'].map(len).mean():.1f} tokens", file=sys.stderr)


if __name__ == "__main__":
    run_cli(main)
