"""The tiny study through Snakemake's SLURM executor on a real one-node cluster started here (Debian's
slurmctld, slurmd and munge), with outputs identical to a local run. Every daemon the test starts is
stopped by PID, even when the test fails."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import artifact_digests, copy_workflow, differences, snakemake

pytestmark = [pytest.mark.e2e, pytest.mark.slurm]
TINY = "tests/config/tiny.yaml"
DAEMONS = ("munged", "slurmctld", "slurmd")
CONF = Path("/etc/slurm/slurm.conf")


def _binary(name: str) -> str | None:
    return shutil.which(name) or next((str(p) for p in (Path("/usr/sbin") / name,) if p.exists()), None)


def _slurm_conf(state: Path) -> str:
    host = socket.gethostname().split(".")[0]
    mem_mb = int(int(Path("/proc/meminfo").read_text().split()[1]) / 1024 * 0.8)
    return "\n".join([
        "ClusterName=kr-test", f"SlurmctldHost={host}", "AuthType=auth/munge", "SlurmUser=root",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "MpiDefault=none",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core_Memory",
        "SchedulerType=sched/builtin", "ReturnToService=2",
        "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
        f"StateSaveLocation={state}/ctld", f"SlurmdSpoolDir={state}/d",
        f"SlurmctldLogFile={state}/slurmctld.log", f"SlurmdLogFile={state}/slurmd.log",
        f"SlurmctldPidFile={state}/slurmctld.pid", f"SlurmdPidFile={state}/slurmd.pid",
        f"NodeName={host} CPUs={os.cpu_count()} RealMemory={mem_mb} State=UNKNOWN",
        f"PartitionName=main Nodes={host} Default=YES MaxTime=INFINITE State=UP", ""])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    missing = [d for d in (*DAEMONS, "sbatch", "squeue") if not _binary(d)]
    if missing or os.geteuid() != 0:
        pytest.skip(f"needs root and Debian's slurmctld, slurmd, slurm-client and munge (missing: {missing}); "
                    ".ci/run installs them")
    state = tmp_path_factory.mktemp("slurm")
    (state / "ctld").mkdir()
    (state / "d").mkdir()
    backup = CONF.read_bytes() if CONF.exists() else None
    CONF.parent.mkdir(parents=True, exist_ok=True)
    CONF.write_text(_slurm_conf(state))
    Path("/run/munge").mkdir(parents=True, exist_ok=True)
    procs = []
    try:
        # in the foreground (-F / -D) so that each daemon's PID is the one we started
        for cmd in ([_binary("munged"), "-F", "--force"], [_binary("slurmctld"), "-D", "-i"],
                    [_binary("slurmd"), "-D"]):
            procs.append(subprocess.Popen(cmd, stdout=open(state / f"{Path(cmd[0]).name}.out", "w"),
                                          stderr=subprocess.STDOUT))
            time.sleep(1)
        deadline = time.time() + 60
        while time.time() < deadline:
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True).stdout
            if "idle" in out:
                break
            time.sleep(1)
        else:
            raise AssertionError(f"the node never became idle: {out!r}\n{(state / 'slurmctld.log').read_text()[-2000:]}")
        yield state
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if backup is None:
            CONF.unlink(missing_ok=True)
        else:
            CONF.write_bytes(backup)


def test_tiny_study_on_slurm_matches_a_local_run(cluster, tmp_path, tiny_reference):
    on_slurm = copy_workflow(tmp_path / "slurm")
    proc = snakemake(on_slurm, "--workflow-profile", "profiles/slurm", "--configfile", TINY)
    assert "Finished jobid: 0 (Rule: all)" in proc.stdout + proc.stderr
    # the heavy jobs really went through sbatch
    submitted = (proc.stdout + proc.stderr).count("has been submitted with SLURM jobid")
    assert submitted >= 8 + 8 + 16, f"only {submitted} jobs went through SLURM"
    # every artifact equals the local run's, bit for bit (wall-clock fields aside)
    on_slurm_files = artifact_digests(on_slurm)
    assert len(on_slurm_files) > 100
    differ = differences(on_slurm_files, artifact_digests(tiny_reference))
    assert not differ, f"SLURM and local outputs differ: {differ[:20]}"
    assert subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout.strip() == ""
