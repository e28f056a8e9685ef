"""Benchmark the generalized evaluation of interpolated bodies against the obvious approach.

Both score the same points (bodies on a line between the pretrained body and a perturbed copy) on
the same probe-training sample and test split, with the same fresh linear head, in one process:
  ours     workflow_scripts.probe.BodyEvaluator: one model object whose body is overwritten per point,
           inputs tokenised once, length-sorted batches with dynamic padding, inference mode
  obvious  a new model per point (from_pretrained, then the body loaded into it), texts tokenised
           for every evaluation and padded to max length, a plain DataLoader, torch.no_grad
It prints evaluations per minute of each and their ratio, and checks that the accuracies agree.

  python benchmarks/evaluation.py [--base-dir resources/models/minilm_l6]
         [--dataset-dir resources/datasets/rotten_tomatoes] [--points 4] [--threads 1]
Without the default study's files it falls back to the test fixtures (tiny BERT, a tweets CSV).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from workflow_scripts.devices import configure_threads  # noqa: E402
from workflow_scripts.evaluation import encode_inputs, probe_sample, read_inputs, write_inputs  # noqa: E402
from workflow_scripts.models import load_classifier  # noqa: E402
from workflow_scripts.probe import BodyEvaluator, fit_probe  # noqa: E402
from workflow_scripts.weights import build_manifest, flatten_model, unflatten_into  # noqa: E402


def fixture_dataset(folder: Path) -> Path:
    from workflow_scripts import sources

    spec = {"name": "tweets", "task": "sentiment", "labels": ["negative", "positive"],
            "split": {"seed": 0, "validation_fraction": 0.1, "test_fraction": 0.4},
            "source": {"type": "local", "path": str(ROOT / "tests/data/tiny/tweets.csv"),
                       "columns": {"text": "tweet", "label": "polarity"}}}
    sources.prepare_dataset(spec, [], folder)
    return folder


def obvious(base_dir, frame_train, frame_test, body: np.ndarray, manifest, num_labels, max_length, batch_size):
    """What a first script does: a fresh model per point, padding to max length, a DataLoader."""
    from torch.utils.data import DataLoader, TensorDataset
    from transformers import AutoTokenizer

    model = load_classifier(base_dir, num_labels)
    unflatten_into(model, body, manifest)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    head_input = []
    model.classifier.register_forward_pre_hook(lambda m, args: head_input.append(args[0]))
    feats = {}
    for name, frame in (("train", frame_train), ("test", frame_test)):
        enc = tokenizer(frame["text"].tolist(), truncation=True, max_length=max_length, padding="max_length",
                        return_tensors="pt")
        loader = DataLoader(TensorDataset(enc["input_ids"], enc["attention_mask"]), batch_size=batch_size)
        out = []
        with torch.no_grad():
            for ids, mask in loader:
                head_input.clear()
                model(input_ids=ids, attention_mask=mask)
                out.append(head_input[0].numpy())
        feats[name] = np.concatenate(out)
    return fit_probe(feats["train"], frame_train["label"].to_numpy(), feats["test"], frame_test["label"].to_numpy(),
                     num_labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-dir", default=str(ROOT / "resources/models/minilm_l6"))
    parser.add_argument("--dataset-dir", default=str(ROOT / "resources/datasets/rotten_tomatoes"))
    parser.add_argument("--points", type=int, default=4)
    parser.add_argument("--probe-train", type=int, default=200)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    configure_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="kr-bench-eval-"))
    base_dir, dataset_dir = Path(args.base_dir), Path(args.dataset_dir)
    if not (base_dir / "model.safetensors").is_file() or not (dataset_dir / "meta.json").is_file():
        print("default study files not found: using the test fixtures (tiny BERT, tweets)")
        base_dir, dataset_dir = ROOT / "tests/data/tiny_bert", fixture_dataset(tmp / "tweets")

    model = load_classifier(base_dir, 2)
    manifest = build_manifest(model, base_dir.name, "-")
    pretrained = flatten_model(model, manifest)
    rng = np.random.default_rng(0)
    end = pretrained + rng.normal(scale=2e-3, size=pretrained.shape).astype(np.float32)
    alphas = np.linspace(-0.5, 1.5, args.points)
    bodies = [((1 - a) * pretrained.astype(np.float64) + a * end).astype(np.float32) for a in alphas]

    frame, info = encode_inputs(base_dir, dataset_dir, args.max_length, args.probe_train, args.test, seed=0)
    write_inputs(tmp / "inputs.parquet", frame, info)
    sample = probe_sample(dataset_dir, args.probe_train, args.test, seed=0)  # the same examples, as text
    started = time.perf_counter()
    evaluator = BodyEvaluator(base_dir, manifest, batch_size=args.batch_size, threads=args.threads)
    inputs = read_inputs(tmp / "inputs.parquet")
    ours = []
    for body in bodies:
        evaluator.set_body(body)
        ours.append(evaluator.evaluate(inputs)[0])
    ours_s = time.perf_counter() - started

    started = time.perf_counter()
    theirs = [obvious(base_dir, sample["train"], sample["test"], body, manifest, info["num_labels"], args.max_length,
                      args.batch_size) for body in bodies]
    theirs_s = time.perf_counter() - started

    n = len(bodies)
    print(f"{n} points on {dataset_dir.name} ({len(inputs.train)} probe-training + {len(inputs.test)} test examples, "
          f"max length {args.max_length}, mean length {frame['input_ids'].map(len).mean():.1f}), "
          f"{args.threads} thread(s), base {base_dir.name}")
    print(f"  ours     {ours_s:7.1f} s  {60 * n / ours_s:6.1f} evaluations/min")
    print(f"  obvious  {theirs_s:7.1f} s  {60 * n / theirs_s:6.1f} evaluations/min")
    print(f"  ratio    {theirs_s / ours_s:.2f}x faster")
    gaps = [abs(a["accuracy"] - b["accuracy"]) for a, b in zip(ours, theirs)]
    print(f"  accuracies {[round(r['accuracy'], 3) for r in ours]}; largest gap to the obvious approach "
          f"{max(gaps):.4f} (padding changes float rounding only)")


if __name__ == "__main__":
    main()
