"""Share results through DVC without recomputing them: pull, check, and bring Snakemake's records in line.

After `dvc pull` in a fresh clone the outputs are there but Snakemake has no records of them
(.snakemake/metadata): it would rerun jobs, and could not see later code or params changes. `kr-sync pull`
pulls, refuses to go on unless `dvc status` is clean (the pulled outputs are exactly those dvc.lock
records for this code and config), then runs `snakemake --touch --forceall`, which writes a record for
every output with the current code, params and inputs, and finally checks that a dry run has nothing
to do.

  kr-sync pull [--remote NAME] [--configfile FILE] [--jobs N]
  kr-sync check [--configfile FILE]          # warn about outputs Snakemake has no records of
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from .io import InputError, run_cli

METADATA = Path(".snakemake") / "metadata"


def _run(cmd: Sequence[str], what: str, capture: bool = False) -> subprocess.CompletedProcess:
    print(f"$ {' '.join(cmd)}", file=sys.stderr, flush=True)
    proc = subprocess.run(list(cmd), text=True, capture_output=capture)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout or "").strip()[-2000:] if capture else ""
        raise InputError(f"{what} failed (exit {proc.returncode}){': ' + detail if detail else ''}")
    return proc


def dvc_status_problems() -> list[str]:
    """What `dvc status` reports as out of line with dvc.lock (empty: clean)."""
    proc = _run(["dvc", "status", "--json"], "dvc status", capture=True)
    text = proc.stdout.strip()
    status = json.loads(text[text.index("{"):]) if "{" in text else {}
    problems = []
    for stage, changes in status.items():
        for change in changes:
            if isinstance(change, dict):
                for kind, items in change.items():
                    problems.append(f"{stage}: {kind} {json.dumps(items, sort_keys=True)}")
            else:
                problems.append(f"{stage}: {change}")
    return problems


def snakemake_args(configfile: str | None) -> list[str]:
    return [sys.executable, "-m", "snakemake", *(["--configfile", configfile] if configfile else [])]


def planned_jobs(configfile: str | None) -> list[str]:
    """Rules a dry run would execute (empty: nothing to do)."""
    proc = _run([*snakemake_args(configfile), "-n", "--quiet", "rules"], "snakemake dry run", capture=True)
    jobs: dict[str, str] = {}  # the job-stats table can be printed more than once
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("job", "total"):
            jobs[parts[0]] = parts[1]
    return [f"{rule} x{count}" for rule, count in jobs.items()]


def pull(remote: str | None, configfile: str | None, jobs: int | None) -> None:
    started = time.perf_counter()
    try:
        _run(["dvc", "pull", *(["-r", remote] if remote else []), *(["-j", str(jobs)] if jobs else [])], "dvc pull")
    except InputError as err:
        raise InputError(f"{err}; DVC's message is above: an object missing from the remote or refused as "
                         "corrupted (remote option verify), or a local file that differs from its record. "
                         "Snakemake's records are left alone.") from None
    problems = dvc_status_problems()
    if problems:
        raise InputError("dvc status is not clean after the pull, so the outputs are not the ones dvc.lock "
                         "records for this code and config; Snakemake's records are left alone. Differences:\n  "
                         + "\n  ".join(problems))
    # records for every output, written with the current code, params and inputs of its job
    _run([*snakemake_args(configfile), "--touch", "--forceall", "--cores", "1", "--quiet"], "snakemake --touch")
    left = planned_jobs(configfile)
    if left:
        raise InputError(f"after the pull Snakemake still plans jobs: {', '.join(left)}")
    print(f"pulled and reconciled in {time.perf_counter() - started:.1f} s: `snakemake --cores all` has nothing "
          "to do", file=sys.stderr)


def unrecorded(outputs: Sequence[str | Path], metadata: Path = METADATA) -> list[str]:
    """Outputs that exist while Snakemake holds no records at all (a pull or copy without reconciling)."""
    present = [str(p) for p in outputs if Path(p).exists()]
    has_records = metadata.is_dir() and any(metadata.iterdir())
    return [] if has_records else present


def warning(outputs: Sequence[str | Path], metadata: Path = METADATA) -> str | None:
    found = unrecorded(outputs, metadata)
    if not found:
        return None
    return (f"{len(found)} output(s) exist (e.g. {found[0]}) but Snakemake has no records of them, so it would "
            "rerun their jobs and miss later code or config changes. If they came from `dvc pull`, run "
            "`kr-sync pull` (or `snakemake --touch --forceall --cores 1` once `dvc status` is clean).")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="kr-sync", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["pull", "check"])
    parser.add_argument("--remote", help="DVC remote (default: the project's default remote)")
    parser.add_argument("--configfile", help="the study's config, as given to snakemake (default: config/config.yaml)")
    parser.add_argument("--jobs", type=int, help="parallel transfers for dvc pull")
    args = parser.parse_args(argv)
    if args.command == "pull":
        pull(args.remote, args.configfile, args.jobs)
        return
    left = planned_jobs(args.configfile)
    message = warning([p for p in Path("results").rglob("*") if p.is_file()][:1])
    if message:
        print(f"warning: {message}", file=sys.stderr)
    print("nothing to do" if not left else f"Snakemake plans: {', '.join(left)}", file=sys.stderr)


def cli() -> None:
    run_cli(main)


if __name__ == "__main__":
    cli()
