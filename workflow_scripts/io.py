"""Shared I/O: atomic writes, hashing, JSON/Parquet helpers and the CLI error convention.

Every artifact is written to a temporary name beside its destination and renamed into place,
so a killed job never leaves a file that looks complete.
"""
from __future__ import annotations

import contextlib
import fnmatch
import glob
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator


class InputError(Exception):
    """Bad input named by the user: the message says which input and what is wrong."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a job killed mid-write leaves its temporary file; one job writes a given output, so any such
    # file beside `path` is the residue of an earlier, killed attempt
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.partial"):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        _pause_before_rename(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _pause_before_rename(path: Path) -> None:
    """Fault injection for tests/test_reliability.py: with KR_PAUSE_BEFORE_RENAME=<glob>, a write whose
    destination matches waits, whole but not yet renamed, so a test can kill the job at that instant."""
    pattern = os.environ.get("KR_PAUSE_BEFORE_RENAME")
    if pattern and fnmatch.fnmatch(str(path), pattern):
        time.sleep(3600)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays reach metrics dicts often enough to handle them here
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON ({err})") from None


def write_parquet(path: str | os.PathLike, frame) -> None:
    """Write a pandas DataFrame to Parquet without the pandas index."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False, engine="pyarrow")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def run_cli(main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> None:
    """Run a module's CLI: an InputError becomes one clear line on stderr and exit status 2."""
    try:
        main(argv)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
