"""Sharing through DVC with a local directory remote: push, pull on another clone, nothing recomputed,
a change reruns only its jobs, and corruption in the remote or the cache is reported, not used."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, copy_workflow

pytestmark = pytest.mark.e2e
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
       "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}


def run(cwd: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**ENV, "PYTHONPATH": str(cwd)}
    proc = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def snakemake_plans(cwd: Path) -> str:
    out = run(cwd, sys.executable, "-m", "snakemake", "-n", "--configfile", "config/config.yaml").stdout
    return "" if "Nothing to be done" in out else out


def kr_sync(cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return run(cwd, sys.executable, "-m", "workflow_scripts.share", "pull", check=check)


def vectors(cwd: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((cwd / "results/weights").glob("*.npy"))}


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """An author's project, run with `dvc repro` on the tiny study and pushed to a local remote."""
    root = tmp_path_factory.mktemp("dvc")
    author = copy_workflow(root / "author")
    for name in ("dvc.yaml", ".dvcignore", ".gitignore", ".dvc/config", ".dvc/.gitignore"):
        (author / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, author / name)
    shutil.copy2(author / "tests/config/tiny.yaml", author / "config/config.yaml")  # the study to share
    remote = root / "remote"
    run(author, "git", "init", "-q", "-b", "main")
    run(author, "dvc", "remote", "add", "-d", "store", str(remote))
    run(author, "dvc", "remote", "modify", "store", "verify", "true")
    run(author, "git", "add", "-A")
    run(author, "git", "commit", "-qm", "study")
    run(author, "dvc", "repro")
    run(author, "git", "add", "-A")
    run(author, "git", "commit", "-qm", "results of the tiny study")
    run(author, "dvc", "push")
    return root, author, remote


def test_collaborator_pulls_and_has_nothing_to_do(shared):
    root, author, _ = shared
    assert "dvc.lock" in run(author, "git", "ls-files").stdout
    collab = root / "collab"
    run(root, "git", "clone", "-q", str(author), str(collab))
    run(collab, "dvc", "pull")  # a plain pull: outputs without Snakemake records, which it warns about
    dry = run(collab, sys.executable, "-m", "snakemake", "-n", "--configfile", "config/config.yaml")
    assert "Snakemake has no records of them" in dry.stderr and "kr-sync pull" in dry.stderr
    proc = kr_sync(collab)
    assert "nothing to do" in proc.stderr
    assert snakemake_plans(collab) == ""
    assert run(collab, "dvc", "status").stdout.strip() == "Data and pipelines are up to date."
    assert vectors(collab) == vectors(author) and len(vectors(author)) == 9
    assert (collab / "results/report/findings.md").read_bytes() == (author / "results/report/findings.md").read_bytes()

    # the collaborator changes one finetuning setting: only that dataset's jobs and their dependents rerun
    config = yaml.safe_load((collab / "config/config.yaml").read_text())
    config["datasets"]["amazon"]["finetune"] = {"steps": 5}
    (collab / "config/config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    plan = snakemake_plans(collab)
    finetunes = {line.split("results/models/")[1].split("/")[0] for line in plan.splitlines()
                 if "output: results/models/" in line and "model.safetensors" in line}
    assert finetunes == {"amazon-s0", "amazon-s1"}
    assert "prepare_dataset" not in plan and "fetch_wheel" not in plan
    run(collab, "dvc", "repro")
    log = sorted((collab / ".snakemake/log").glob("*.snakemake.log"))[-1].read_text()
    assert log.count("rule finetune:") == 2, "only amazon's two models are retrained"
    run(collab, "git", "commit", "-qam", "amazon: 5 steps")
    run(collab, "dvc", "push")

    # the author pulls the change and reconciles: nothing to do, and the collaborator's bytes
    run(author, "git", "pull", "-q", str(collab), "main")
    kr_sync(author)
    assert snakemake_plans(author) == ""
    assert vectors(author) == vectors(collab)
    assert run(author, "dvc", "status").stdout.strip() == "Data and pipelines are up to date."


def test_corruption_in_the_remote_or_the_cache_is_reported(shared):
    root, author, remote = shared
    # flip bytes of one object in the remote: a fresh clone's pull must refuse it
    objects = sorted(p for p in remote.rglob("*") if p.is_file() and p.suffix != ".dir" and p.stat().st_size > 1000)
    victim = objects[0]
    victim.chmod(0o644)
    data = bytearray(victim.read_bytes())
    data[100:110] = b"corrupted!"
    victim.write_bytes(bytes(data))
    clone = root / "clone3"
    run(root, "git", "clone", "-q", str(author), str(clone))
    proc = kr_sync(clone, check=False)
    assert proc.returncode != 0
    assert "failed" in proc.stderr or "not clean" in proc.stderr
    assert not (clone / ".snakemake/metadata").exists(), "no records were written for unverified outputs"

    # corrupt the author's cache (hardlinked to the workspace): the next reconcile refuses to go on
    cached = sorted(p for p in (author / ".dvc/cache").rglob("*") if p.is_file() and p.stat().st_size > 1000)[0]
    cached.chmod(0o644)
    data = bytearray(cached.read_bytes())
    data[200:210] = b"corrupted!"
    cached.write_bytes(bytes(data))
    metadata_before = sorted((p.name, p.stat().st_mtime_ns) for p in (author / ".snakemake/metadata").iterdir())
    proc = kr_sync(author, check=False)
    assert proc.returncode != 0
    # DVC refuses to overwrite a file that differs from its record, and names it; nothing is touched
    assert "dvc status is not clean" in proc.stderr or "unsaved files" in proc.stderr
    assert metadata_before == sorted((p.name, p.stat().st_mtime_ns) for p in (author / ".snakemake/metadata").iterdir())
