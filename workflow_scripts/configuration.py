"""Config checks run when the workflow starts, before any job: every problem at once, by dotted key."""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Mapping

import jsonschema
import yaml


class ConfigError(ValueError):
    pass


def _dotted(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _describe(error: jsonschema.ValidationError) -> list[str]:
    where = _dotted(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        allowed = list(error.schema.get("properties", {}))
        out = []
        for key in sorted(set(error.instance) - set(allowed)):
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else f" (known keys: {', '.join(allowed)})"
            out.append(f"{_dotted([*error.absolute_path, key])}: unknown key{suggestion}")
        return out
    if "propertyNames" in error.schema_path:
        return [f"{where}: name {error.instance!r} is not allowed ({error.schema.get('description', error.message)})"]
    return [f"{where}: {error.message}"]


def check_config(config: Mapping[str, Any], schema_path: str | Path, root: str | Path = ".") -> None:
    """Raise ConfigError listing every schema violation and cross-key problem of `config`; relative
    `local` source paths are looked up under `root` (the project folder Snakemake runs in)."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path]):
        problems.extend(_describe(error))
    if not problems:
        problems.extend(_cross_checks(config))
        problems.extend(_local_paths(config, Path(root)))
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def _cross_checks(config: Mapping[str, Any]) -> list[str]:
    """What JSON Schema cannot say: wheel sources name a pinned wheel; interpolation names real models."""
    wheels = config.get("wheels") or {}
    sources = {"base_model.source": config["base_model"]["source"]}
    sources.update({f"datasets.{n}.source": d["source"] for n, d in config["datasets"].items()})
    problems = [
        f"{where}.package: {src['package']!r} is not pinned under `wheels` (pinned: {sorted(wheels)})"
        for where, src in sources.items()
        if src["type"] == "wheel" and src["package"] not in wheels
    ]
    targets = (config.get("centroid") or {}).get("targets") or []
    problems += [f"centroid.targets: {t!r} is not a dataset of this study (datasets: {sorted(config['datasets'])})"
                 for t in targets if t not in config["datasets"]]
    if len(config["datasets"]) < 2:
        problems.append("datasets: the leave-one-out centroid (and any comparison across datasets) needs at least two")
    return problems + _interpolation_checks(config)


def _interpolation_checks(config: Mapping[str, Any]) -> list[str]:
    datasets = config["datasets"]
    seeds = config["seeds"]
    ids = [f"{d}-s{s}" for d in datasets for s in seeds]
    interp = config.get("interpolation") or {}
    problems = []
    for i, pair in enumerate(interp.get("pairs") or []):
        for model in pair:
            if model not in ids:
                hint = difflib.get_close_matches(model, ids, n=1)
                problems.append(f"interpolation.pairs.{i}: unknown model id {model!r}"
                                + (f" (did you mean {hint[0]!r}?)" if hint else f" (ids are <dataset>-s<seed>, e.g. {ids[0]})"))
        if pair[0] == pair[1]:
            problems.append(f"interpolation.pairs.{i}: a line needs two different models, got {pair[0]!r} twice")
    tasks = {d["task"] for d in datasets.values()}
    for i, group in enumerate((interp.get("region") or {}).get("groups") or []):
        kind, _, name = group.partition(":")
        known = datasets if kind == "dataset" else tasks
        if name not in known:
            problems.append(f"interpolation.region.groups.{i}: no {kind} named {name!r} (known: {sorted(known)})")
        elif kind == "dataset" and len(seeds) < 2:
            problems.append(f"interpolation.region.groups.{i}: {group!r} has one model (one seed); a region needs two")
    return problems


def _local_paths(config: Mapping[str, Any], root: Path) -> list[str]:
    """A `local` source must exist before anything runs: say so by key, not as a missing rule input."""
    entries = [("base_model.source.path", config["base_model"]["source"])]
    for name, entry in config["datasets"].items():
        source = entry["source"]
        if source.get("paths"):
            entries += [(f"datasets.{name}.source.paths.{split}", {**source, "path": p})
                        for split, p in source["paths"].items()]
        else:
            entries.append((f"datasets.{name}.source.path", source))
    problems = []
    for where, source in entries:
        if source["type"] != "local" or not source.get("path"):
            continue
        path = root / source["path"]
        if not path.exists():
            problems.append(f"{where}: {source['path']} does not exist (relative paths are read from {root.resolve()})")
    return problems
