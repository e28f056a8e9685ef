"""How long Snakemake takes to build the DAG (a dry run, `snakemake -n`) as the study grows.

Each study is dry-run in a fresh copy of the workflow (no outputs exist, so every job is planned):
  tiny        tests/config/tiny.yaml: 4 datasets x 2 seeds
  tiny-52     the same with 13 seeds (52 models)
  tiny-200    the same with 50 seeds (200 models)
  default     config/config.yaml (24 models)
  paper       config/paper.yaml (115 models, 579 jobs)
The baseline, measured the same way in the same process, is `snakemake --version`: starting Python and
importing Snakemake. The ratio says what building the DAG adds to that. Target: under 10 s for each.

  python benchmarks/dag.py [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def timed(args: list[str], cwd: Path) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(cwd), "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"snakemake {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return seconds, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "project"
        project.mkdir()
        for part in ("Snakefile", "rules", "config", "profiles", "workflow_scripts", "tests/data", "tests/config"):
            src = ROOT / part
            if src.is_dir():
                shutil.copytree(src, project / part, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(src, project / part)
        studies = {"tiny": "tests/config/tiny.yaml"}
        for seeds in (13, 50):
            config = yaml.safe_load((ROOT / "tests/config/tiny.yaml").read_text())
            config["seeds"] = list(range(seeds))
            path = Path(tmp) / f"tiny-{seeds}.yaml"
            path.write_text(yaml.safe_dump(config))
            studies[f"tiny-{4 * seeds}"] = str(path)
        studies.update({"default": "config/config.yaml", "paper": "config/paper.yaml"})

        baseline = statistics.median(timed(["--version"], project)[0] for _ in range(args.repeat))
        print(f"baseline (python -m snakemake --version): {baseline:.2f} s")
        print(f"{'study':10} {'jobs':>6} {'dry run (s)':>12} {'x baseline':>11}")
        for name, configfile in studies.items():
            runs = [timed(["-n", "--configfile", configfile], project) for _ in range(args.repeat)]
            seconds = statistics.median(r[0] for r in runs)
            jobs = re.search(r"^total\s+(\d+)$", runs[0][1], re.M)
            print(f"{name:10} {jobs.group(1) if jobs else '?':>6} {seconds:12.2f} {seconds / baseline:11.2f}"
                  + ("" if seconds < 10 else "   over the 10 s target"))


if __name__ == "__main__":
    main()
