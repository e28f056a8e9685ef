"""Tokenising, dynamic-padding batches and evaluation of a classification model on a split."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .devices import autocast
from .io import InputError


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
