from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY_BERT = ROOT / "tests" / "data" / "tiny_bert"
TINY = "tests/config/tiny.yaml"
# wall-clock times: the only fields in which two runs of the same study may differ
TIMING_FIELDS = frozenset({"elapsed_s", "train_seconds"})
WORKFLOW_PARTS = ("Snakefile", "rules", "config", "profiles", "workflow_scripts", "tests/data", "tests/config")


def copy_workflow(dest: Path) -> Path:
    """A fresh project folder holding the workflow and its fixtures, as a user's clone would."""
    for part in WORKFLOW_PARTS:
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (dest / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / part)
    return dest


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(workdir), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir, env=env,
                          capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


@pytest.fixture
def workflow(tmp_path: Path) -> Path:
    return copy_workflow(tmp_path / "project")


@pytest.fixture(scope="session")
def tiny_bert() -> Path:
    return TINY_BERT


def planned_outputs(workdir: Path, configfile: str = TINY) -> dict[str, set[str]]:
    """Rule name -> outputs of the jobs a dry run would execute."""
    out = snakemake(workdir, "-n", "--configfile", configfile).stdout
    jobs: dict[str, set[str]] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out):
        head = re.match(r"(?:local)?rule (\w+):", block.strip())
        outputs = re.search(r"^\s+output: (.*)$", block, re.M)
        if head and head.group(1) != "all":
            jobs.setdefault(head.group(1), set()).update(o.strip() for o in (outputs.group(1).split(",") if outputs else []))
    return jobs


def _without_timing(obj):
    if isinstance(obj, dict):
        return {k: _without_timing(v) for k, v in obj.items() if k not in TIMING_FIELDS}
    if isinstance(obj, list):
        return [_without_timing(v) for v in obj]
    return obj


def artifact_digests(workdir: Path) -> dict[str, str]:
    """sha256 of every file under resources/ and results/ (hidden and partial files included, so residue
    shows). Wall-clock fields are left out of JSON and Parquet; every other byte counts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    digests = {}
    for top in ("resources", "results"):
        for path in sorted((workdir / top).rglob("*")):
            if not path.is_file():
                continue
            data = path.read_bytes()
            if path.suffix == ".parquet" and not path.name.startswith("."):
                table = pq.read_table(path)
                timing = [c for c in table.column_names if c in TIMING_FIELDS]
                if timing:
                    sink = pa.BufferOutputStream()
                    table = table.drop_columns(timing)
                    with pa.ipc.new_stream(sink, table.schema) as writer:
                        writer.write_table(table)
                    data = sink.getvalue().to_pybytes()
            elif path.suffix == ".json" and not path.name.startswith("."):
                obj = json.loads(data)
                if _without_timing(obj) != obj:
                    data = json.dumps(_without_timing(obj), sort_keys=True).encode()
            digests[str(path.relative_to(workdir))] = hashlib.sha256(data).hexdigest()
    return digests


def differences(a: dict[str, str], b: dict[str, str]) -> list[str]:
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


@pytest.fixture(scope="session")
def tiny_reference(tmp_path_factory) -> Path:
    """One uninterrupted run of the tiny study with `--cores 2`: the run every other one must equal.
    Read-only: tests that change a project copy it first (copy_run)."""
    workdir = copy_workflow(tmp_path_factory.mktemp("reference") / "project")
    snakemake(workdir, "--cores", "2", "--configfile", TINY)
    return workdir


def copy_run(run: Path, dest: Path) -> Path:
    """A finished project copied with its Snakemake records and file times, so it is still up to date."""
    shutil.copytree(run, dest, symlinks=True)
    return dest
