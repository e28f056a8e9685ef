"""Normalise raw dataset frames into train / validation / test with integer labels.

Steps, in order: strip texts and drop empty ones; map labels to ids (dropping `drop_labels`, failing on
unknown ones); drop duplicate texts within the dataset (all copies when their labels conflict); remove
from validation and test the texts that also occur in an earlier split; make seeded stratified splits
where the source has none; cap each split by stratified sampling.
"""
from __future__ import annotations

from collections import Counter
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .io import InputError

SPLITS = ("train", "validation", "test")


def _key(frame: pd.DataFrame) -> pd.Series:
    if "text_pair" in frame.columns:
        return frame["text"] + "\x1f" + frame["text_pair"]
    return frame["text"]


def label_names(frames: Mapping[str, pd.DataFrame], labels: Sequence | None, drop: Sequence) -> list[str]:
    """The dataset's label names: as configured, or the sorted distinct raw labels."""
    if labels:
        return [str(label) for label in labels]
    seen = set()
    for frame in frames.values():
        seen.update(_raw_labels(frame).unique())
    seen -= {str(d) for d in drop} | {""}
    values = sorted(seen)
    # integer labels sort numerically so that id i keeps meaning raw label i
    if values and all(_is_integer(v) for v in values):
        values = sorted(values, key=int)
    return values


def _is_integer(value: str) -> bool:
    return value.lstrip("-").isdigit()


def _missing(value) -> bool:
    return value is None or (np.ndim(value) == 0 and bool(pd.isna(value)))


def _raw_labels(frame: pd.DataFrame) -> pd.Series:
    """Labels as stripped strings; a missing label (null, NaN or blank) is ''."""
    return frame["label"].map(lambda v: "" if _missing(v) else str(v).strip())


def missing_labels(frame: pd.DataFrame, drop: Sequence, where: str) -> None:
    """Refuse rows without a label, unless `drop_labels` lists "": an empty cell must not become a class."""
    if "" in {str(d) for d in drop}:
        return
    missing = (_raw_labels(frame) == "").to_numpy()
    if missing.any():
        first = frame.index[np.flatnonzero(missing)[0]]
        where_first = f"row {first + 1} as read" if isinstance(first, (int, np.integer)) else f"row {first!r}"
        raise InputError(f"{where}: {int(missing.sum())} row(s) have no label (the first: {where_first}); fill them "
                         'in, remove them from the source, or drop them with `drop_labels: [""]`')


def map_labels(frame: pd.DataFrame, names: list[str], drop: Sequence, where: str) -> tuple[pd.DataFrame, int]:
    raw = _raw_labels(frame)
    dropped = raw.isin({str(d) for d in drop})
    frame, raw = frame.loc[~dropped], raw.loc[~dropped]
    index = {name: i for i, name in enumerate(names)}
    unknown = Counter(v for v in raw if v not in index)
    if unknown:
        shown = ", ".join(f"{k!r} ({n}x)" for k, n in unknown.most_common(5))
        hint = "List them in `labels`, or drop them with `drop_labels`."
        if all(_is_integer(n) for n in names) and not any(_is_integer(k) for k in unknown):
            hint = "The source holds label names where `labels` lists numbers: list the names, in id order."
        elif not any(_is_integer(n) for n in names) and all(_is_integer(k) for k in unknown):
            hint = ("The source holds numbers where `labels` lists names: list the numbers (`labels: [0, 1, ...]`), "
                    "which keep their meaning as ids.")
        raise InputError(f"{where}: unknown label(s) {shown}; the dataset's labels are {names}. {hint}")
    out = frame.copy()
    out["label"] = raw.map(index).astype("int64")
    return out, int(dropped.sum())


def stratified_take(labels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of a stratified random sample of `count` rows (largest-remainder quotas per class)."""
    n = len(labels)
    want = min(count, n)
    if want >= n:
        return rng.permutation(n)
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.floor(counts * want / n).astype(int)
    # hand out the remaining places by largest remainder, so the total is exact
    remainder = counts * want / n - quota
    for i in np.argsort(-remainder, kind="stable")[: want - quota.sum()]:
        quota[i] += 1
    picked = []
    for cls, q in zip(classes, quota):
        members = np.flatnonzero(labels == cls)
        picked.append(rng.permutation(members)[:q])
    return rng.permutation(np.concatenate(picked))


def normalise(frames: Mapping[str, pd.DataFrame], spec: Mapping, name: str) -> tuple[dict[str, pd.DataFrame], dict]:
    """Return the three normalised splits and statistics for meta.json."""
    split_cfg = spec.get("split", {})
    drop = list(spec.get("drop_labels", []))
    unknown_splits = set(frames) - {*SPLITS, "all"}
    if unknown_splits:
        raise InputError(f"dataset {name}: unknown split(s) {sorted(unknown_splits)}; use train, validation, test")
    if "all" in frames and len(frames) > 1:
        raise InputError(f"dataset {name}: give either one file for all data or files per split, not both")
    frames = {("train" if s == "all" else s): f for s, f in frames.items()}
    if "train" not in frames:
        raise InputError(f"dataset {name}: the source has no train split")

    stats: dict = {"raw": {s: len(f) for s, f in frames.items()}}
    cleaned = {}
    empty = 0
    for split, frame in frames.items():
        if "label" not in frame.columns or "text" not in frame.columns:
            raise InputError(f"dataset {name}, split {split}: needs `text` and `label` columns, has {list(frame.columns)}")
        missing_labels(frame, drop, f"dataset {name}, split {split}")
        frame = frame.copy()
        for col in ("text", "text_pair"):
            if col in frame.columns:
                # a null text is empty, not the string "None" or "nan"
                frame[col] = frame[col].map(lambda v: "" if _missing(v) else str(v).strip())
        mask = frame["text"].str.len() > 0
        if "text_pair" in frame.columns:
            mask &= frame["text_pair"].str.len() > 0
        empty += int((~mask).sum())
        cleaned[split] = frame.loc[mask]

    if not any(len(f) for f in cleaned.values()):
        raise InputError(f"dataset {name}: no rows left after normalisation ({sum(stats['raw'].values())} read, "
                         f"{empty} with an empty text)")
    names = label_names(cleaned, spec.get("labels"), drop)
    if len(names) < 2:
        raise InputError(f"dataset {name}: needs at least two labels, found {names}")
    both = sorted({str(d) for d in drop} & set(names))
    if both:
        raise InputError(f"dataset {name}: label(s) {both} are both in `labels` and in `drop_labels`")
    label_dropped = 0
    for split in list(cleaned):
        cleaned[split], n = map_labels(cleaned[split], names, drop, f"dataset {name}, split {split}")
        label_dropped += n
    present = set().union(*(set(f["label"]) for f in cleaned.values()))
    absent = [n for i, n in enumerate(names) if i not in present]
    if absent and spec.get("labels_from", "config") == "config":
        # a declared class no example has: a typo in `labels`, or the wrong column read as the label
        raise InputError(f"dataset {name}: label(s) {absent} are listed in `labels` but no example has them "
                         f"(labels found: {sorted(names[i] for i in present)})")

    # texts whose copies disagree on the label are ambiguous: drop every copy, in every split
    combined = pd.concat([f.assign(_key=_key(f)) for f in cleaned.values()])
    per_key = combined.groupby("_key")["label"].nunique()
    conflicting = set(per_key.index[per_key > 1])
    duplicates = overlap = 0
    seen: set = set()
    for split in SPLITS:
        if split not in cleaned:
            continue
        frame = cleaned[split]
        keys = _key(frame)
        keep = ~keys.isin(conflicting)
        dup = keys.duplicated() & keep
        keep &= ~dup
        leaked = keys.isin(seen) & keep
        keep &= ~leaked
        duplicates += int(dup.sum())
        overlap += int(leaked.sum())
        seen.update(keys[keep])
        cleaned[split] = frame.loc[keep].reset_index(drop=True)
    conflict_rows = int(combined["_key"].isin(conflicting).sum())

    rng = np.random.default_rng(int(split_cfg.get("seed", 0)))
    made = []
    source_train = len(cleaned["train"])  # fractions are of the source's train split, before any is held out
    for split, fraction_key in (("test", "test_fraction"), ("validation", "validation_fraction")):
        if split in cleaned:
            continue
        train = cleaned["train"]
        count = int(round(float(split_cfg.get(fraction_key, 0.1)) * source_train))
        take = stratified_take(train["label"].to_numpy(), count, rng)
        rest = np.setdiff1d(np.arange(len(train)), take)
        cleaned[split] = train.iloc[np.sort(take)].reset_index(drop=True)
        cleaned["train"] = train.iloc[rest].reset_index(drop=True)
        made.append(split)

    out = {}
    for split in SPLITS:
        frame = cleaned[split]
        cap = split_cfg.get(f"max_{split}")
        if cap is not None and len(frame) > cap:
            frame = frame.iloc[stratified_take(frame["label"].to_numpy(), int(cap), rng)]
        else:
            frame = frame.iloc[rng.permutation(len(frame))]
        frame = frame.reset_index(drop=True)
        if len(frame) == 0:
            raise InputError(f"dataset {name}: the {split} split is empty after normalisation")
        columns = ["text", "text_pair", "label"] if "text_pair" in frame.columns else ["text", "label"]
        out[split] = frame[columns]
    if out["train"]["label"].nunique() < 2:
        raise InputError(f"dataset {name}: the train split holds a single label after normalisation")

    stats.update(
        {
            "labels": names,
            "num_labels": len(names),
            "dropped": {
                "empty": empty,
                "label_dropped": label_dropped,
                "duplicate": duplicates,
                "conflicting_labels": conflict_rows,
                "overlap_with_earlier_split": overlap,
            },
            "splits_made": made,
            "counts": {s: len(f) for s, f in out.items()},
            "label_counts": {s: {names[k]: int(v) for k, v in sorted(Counter(f["label"]).items())} for s, f in out.items()},
        }
    )
    return out, stats
