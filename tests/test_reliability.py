"""Reliability: a killed run resumes to the same outputs, runs are deterministic, large studies complete,
and nothing in the source tree can run code out of an artifact."""
from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from conftest import (ROOT, TINY, artifact_digests, copy_workflow, differences, planned_outputs, snakemake)


# ----------------------------------------------------------------------------- writes are atomic

SLOW_WRITER = """
import sys, time
from workflow_scripts.io import atomic_path
with atomic_path(sys.argv[1]) as part, open(part, "wb") as handle:
    for _ in range(3000):  # slow on purpose: the kill must land mid-write
        handle.write(b"x" * 1024)
        handle.flush()
        time.sleep(0.01)
"""
WRITER = """
import sys
import numpy as np
from workflow_scripts.weights import save_vector
save_vector(sys.argv[1], np.ones(10, dtype=np.float32))
"""


def test_a_writer_killed_mid_write_leaves_no_output_and_its_residue_is_cleared(tmp_path):
    out = tmp_path / "vector.npy"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(out)], env=env)
    deadline = time.monotonic() + 60
    partial = []
    while time.monotonic() < deadline and proc.poll() is None and not partial:
        partial = [p for p in tmp_path.glob(".vector.npy.*.partial") if p.stat().st_size > 0]
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    assert partial, "the writer never got going"
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == [partial[0].name]  # only the residue, named as such
    # the next write of that output (the rerun of the killed job) clears the residue
    subprocess.run([sys.executable, "-c", WRITER, str(out)], env=env, check=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vector.json", "vector.npy"]


# ----------------------------------------------------------------------------- nothing runs code from artifacts

SCANNED = [*sorted((ROOT / "workflow_scripts").glob("*.py")), *sorted((ROOT / "benchmarks").glob("*.py")),
           *sorted((ROOT / "tests").rglob("*.py"))]
RULE_FILES = [ROOT / "Snakefile", *sorted((ROOT / "rules").glob("*.smk"))]
UNPICKLING_MODULES = {"pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def _is_true(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def unsafe_calls(source: str) -> list[str]:
    """Places where Python source could run code from a file: pickle-family imports, torch.load without
    weights_only=True (under any alias), numpy or pandas unpickling, and trust_remote_code not False."""
    tree = ast.parse(source)
    torch_names, load_names, found = {"torch"}, set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            torch_names |= {a.asname for a in node.names if a.name == "torch" and a.asname}
        elif isinstance(node, ast.ImportFrom) and node.module == "torch":
            load_names |= {a.asname or a.name for a in node.names if a.name == "load"}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"line {node.lineno}: import {n}" for n in names if n.split(".")[0] in UNPICKLING_MODULES]
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        owner = getattr(func.value, "id", "") if isinstance(func, ast.Attribute) else ""
        kwargs = {k.arg: k.value for k in node.keywords}
        is_torch_load = (name == "load" and owner in torch_names) or (not owner and name in load_names)
        if is_torch_load and not _is_true(kwargs.get("weights_only")):
            found.append(f"line {node.lineno}: torch.load without weights_only=True")
        if name == "read_pickle" or (name == "load" and _is_true(kwargs.get("allow_pickle"))):
            found.append(f"line {node.lineno}: {name} unpickles")
        if "trust_remote_code" in kwargs and not (isinstance(kwargs["trust_remote_code"], ast.Constant)
                                                  and kwargs["trust_remote_code"].value is False):
            found.append(f"line {node.lineno}: trust_remote_code is not False")
    return found


def test_the_scanner_finds_each_unsafe_pattern():
    bad = """
import pickle
from dill import loads
import torch, numpy as np, pandas as pd
torch.load("m.bin")
torch.load("m.bin", weights_only=False)
np.load("v.npy", allow_pickle=True)
pd.read_pickle("t.pkl")
AutoModel.from_pretrained("x", trust_remote_code=True)
AutoModel.from_pretrained("x", trust_remote_code=flag)
import torch as t
from torch import load as read
t.load("m.bin")
read("m.bin")
"""
    assert len(unsafe_calls(bad)) == 10, unsafe_calls(bad)
    good = 'torch.load("m.bin", map_location="cpu", weights_only=True)\nnp.load("v.npy", allow_pickle=False)\n'
    assert unsafe_calls(good) == []


def test_no_code_runs_from_artifacts():
    problems = [f"{path.relative_to(ROOT)} {p}" for path in SCANNED for p in unsafe_calls(path.read_text())]
    for path in RULE_FILES:  # Snakemake syntax is not Python: a plain text search
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\bpickle\b|torch\.load\(|trust_remote_code\s*=\s*True|allow_pickle\s*=\s*True", line):
                problems.append(f"{path.relative_to(ROOT)} line {number}: {line.strip()}")
    assert len(SCANNED) > 30 and not problems, problems
    # weights enter through safetensors only
    models = (ROOT / "workflow_scripts/models.py").read_text()
    assert "use_safetensors=True" in models


def test_every_output_wildcard_is_constrained_to_one_path_component():
    """Global wildcard constraints keep every output inside the project: each wildcard of each output
    path is constrained, and no constraint admits a path separator or '..'."""
    text = (ROOT / "rules/common.smk").read_text()
    block = re.search(r"^wildcard_constraints:\n((?:    .*\n)+)", text, re.M).group(1)
    constrained = dict(re.findall(r"^    (\w+)=(.+?),?(?:\s+#.*)?$", block, re.M))
    used = set()
    for path in RULE_FILES:
        for section in re.findall(r"^    (?:output|log|benchmark):\n((?:        .*\n)+)", path.read_text(), re.M):
            for line in section.splitlines():
                # in f-strings and expand() templates, single braces are Python's; wildcards are doubled
                doubled = re.search(r'\bf"|expand\(', line)
                used |= set(re.findall(r"\{\{(\w+)\}\}" if doubled else r"(?<!\{)\{(\w+)\}(?!\})", line))
    assert used and used <= set(constrained), used - set(constrained)
    fixed = {"seed", "i", "j", "package", "init"}  # the others are alternations of the config's names
    for name in fixed:
        pattern = re.compile(ast.literal_eval(constrained[name]))
        for hostile in ("..", "a/b", "../x", "/etc", "a..b", ""):
            assert not pattern.fullmatch(hostile), (name, hostile)


# ----------------------------------------------------------------------------- end to end

def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL Snakemake and every job it started: freeze the tree top-down first, so that none spawns
    another, then kill each process and the whole session."""
    frozen, todo = [], [psutil.Process(proc.pid)]
    while todo:
        node = todo.pop()
        try:
            node.suspend()
            frozen.append(node)
            todo.extend(node.children())
        except psutil.NoSuchProcess:
            pass
    for node in frozen:
        try:
            node.kill()
        except psutil.NoSuchProcess:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


# Where to kill: a job holds one output whole but not yet renamed (KR_PAUSE_BEFORE_RENAME, io.py) while
# its other outputs are already in place and look finished. Snakemake must redo them all.
KILL_POINTS = [
    # (what, the paused output, an output of the same job already renamed, the job's rule)
    ("during a finetune", "results/models/*/metrics.json", "model.safetensors", "finetune"),
    ("while distances are written", "results/geometry/gram_cache.parquet", "distances.parquet", "distances"),
    ("while the report is written", "results/report/findings.md", "findings.json", "findings"),
]


def run_until_paused(workdir: Path, pattern: str) -> Path:
    """Run the tiny study until a job pauses before renaming an output matching `pattern`; kill everything
    there. Returns the temporary file of that output."""
    env = {**os.environ, "PYTHONPATH": str(workdir), "HF_HUB_OFFLINE": "1", "KR_PAUSE_BEFORE_RENAME": pattern}
    folder, name = pattern.rsplit("/", 1)
    log = workdir / "killed.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", TINY],
                                cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 900
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                paused = sorted(workdir.glob(f"{folder}/.{name}.*.partial"))
                if paused:
                    time.sleep(0.5)  # the job sleeps there for an hour: let it settle into the pause
                    return paused[0]
                time.sleep(0.05)
        finally:
            kill_tree(proc)
    raise AssertionError(f"the run never paused at {pattern}:\n{log.read_text()[-3000:]}")


@pytest.mark.e2e
def test_killed_runs_resume_to_the_outputs_of_an_uninterrupted_run(tiny_reference, tmp_path):
    reference = artifact_digests(tiny_reference)
    workdir = copy_workflow(tmp_path / "project")
    for what, pattern, renamed, rule in KILL_POINTS:
        partial = run_until_paused(workdir, pattern)
        finished_looking = partial.parent / renamed
        assert finished_looking.is_file(), f"killed {what}: expected {renamed} in place already"
        # Snakemake's lock outlives a SIGKILL: a plain rerun stops and says how to release it
        proc = snakemake(workdir, "--cores", "2", "--configfile", TINY, check=False)
        assert proc.returncode != 0 and "--unlock" in proc.stdout + proc.stderr
        snakemake(workdir, "--unlock", "--configfile", TINY)
        planned = planned_outputs(workdir)
        redo = {o for outputs in planned.values() for o in outputs}
        # the killed job is redone whole, including the outputs it had already put in place
        assert str(finished_looking.relative_to(workdir)) in planned.get(rule, set()), f"killed {what}: {sorted(planned)}"
        # and whatever Snakemake keeps is whole: equal to the uninterrupted run's, byte for byte
        kept = {k: v for k, v in artifact_digests(workdir).items() if k not in redo and not Path(k).name.startswith(".")}
        wrong = [k for k, v in kept.items() if reference.get(k) != v]
        assert kept and not wrong, f"killed {what}: outputs kept that differ from the reference: {wrong}"
    # the default profile's rerun-incomplete redoes the killed jobs; their temporary files are cleared
    snakemake(workdir, "--cores", "2", "--configfile", TINY)
    differ = differences(artifact_digests(workdir), reference)
    assert not differ, f"the resumed run differs from an uninterrupted one: {differ[:20]}"
    assert planned_outputs(workdir) == {}


@pytest.mark.e2e
def test_two_runs_are_identical_with_one_core_or_two(tiny_reference, tmp_path):
    """Determinism: a second, fresh run with --cores 1 (jobs in another order) equals the --cores 2 reference
    byte for byte: weights, vectors, Parquet tables, metrics, figures. Only wall-clock fields may differ."""
    workdir = copy_workflow(tmp_path / "project")
    snakemake(workdir, "--cores", "1", "--configfile", TINY)
    ours, reference = artifact_digests(workdir), artifact_digests(tiny_reference)
    assert len(reference) > 100
    kinds = {Path(k).suffix for k in reference}
    assert {".safetensors", ".npy", ".parquet", ".json", ".png"} <= kinds
    differ = differences(ours, reference)
    assert not differ, f"two runs of the tiny study differ: {differ[:20]}"


@pytest.mark.e2e
def test_a_study_of_fifty_models_completes(tmp_path):
    workdir = copy_workflow(tmp_path / "project")
    config = yaml.safe_load((workdir / TINY).read_text())
    config["seeds"] = list(range(13))  # 4 datasets x 13 seeds = 52 models
    config["geometry"]["block_size"] = 16
    config["centroid"].update(targets=["tweets", "bbc"], seeds=[0])
    (workdir / "fifty.yaml").write_text(yaml.safe_dump(config))
    started_at = time.perf_counter()
    dry = snakemake(workdir, "-n", "--configfile", "fifty.yaml")
    dag_seconds = time.perf_counter() - started_at
    assert re.search(r"^finetune\s+52$", dry.stdout, re.M)
    snakemake(workdir, "--cores", "2", "--configfile", "fifty.yaml")
    import pandas as pd

    metrics = pd.read_parquet(workdir / "results/models/metrics.parquet")
    assert len(metrics) == 52
    distances = pd.read_parquet(workdir / "results/geometry/distances.parquet")
    assert len(distances) == 52 + 52 * 51  # to pretrained, and cosine + Euclidean of each pair
    assert (workdir / "results/report/findings.md").is_file()
    print(f"52 models: dry run (DAG of {len(dry.stdout.splitlines())} lines) in {dag_seconds:.1f} s")
