"""Generalized evaluation: score a body on any dataset with a fresh linear head (the paper's
"generalized loss"), and with the model's own head where the body has one for that dataset.

A body's features are what its classification head reads (the pooled output for BERT, the first
token's hidden state for RoBERTa). They are computed for a capped training sample and the test split
in one length-sorted pass (inputs tokenised once per dataset by `evaluation encode`); a multinomial,
L2-regularised logistic regression fitted on the training features is scored on the test features.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from .devices import autocast, configure_threads, resolve_device, resolve_precision
from .evaluation import Encoded, EvalInputs, collate, length_sorted_batches
from .io import InputError
from .models import load_classifier
from .weights import unflatten_into


def _concat(a: Encoded, b: Encoded) -> Encoded:
    types = a.token_type_ids + b.token_type_ids if a.token_type_ids is not None else None
    return Encoded(a.input_ids + b.input_ids, types, np.concatenate([a.labels, b.labels]))


def fit_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
              num_labels: int, c: float = 1.0, seed: int = 0) -> dict:
    """Fit a multinomial L2-regularised linear head on standardised training features; score test."""
    from sklearn.linear_model import LogisticRegression

    train_x = np.asarray(train_x, dtype=np.float64)
    test_x = np.asarray(test_x, dtype=np.float64)
    mean = train_x.mean(0)
    scale = train_x.std(0)
    scale[scale < 1e-12] = 1.0  # constant features (a collapsed body) carry nothing; do not divide by 0
    train_x = (train_x - mean) / scale
    test_x = (test_x - mean) / scale
    classes = np.unique(train_y)
    proba = np.full((len(test_y), num_labels), 0.0)
    if len(classes) == 1:
        proba[:, classes[0]] = 1.0
    else:
        probe = LogisticRegression(C=c, max_iter=2000, random_state=seed)
        probe.fit(train_x, train_y)
        proba[:, probe.classes_] = probe.predict_proba(test_x)
    # classes absent from the probe's training sample get no mass; clip so the loss stays finite
    picked = np.clip(proba[np.arange(len(test_y)), test_y], 1e-15, None)
    return {"accuracy": float(np.mean(proba.argmax(1) == test_y)), "loss": float(-np.mean(np.log(picked))),
            "n": int(len(test_y))}


class BodyEvaluator:
    """One model object whose body is overwritten for every point: no re-instantiation per evaluation."""

    def __init__(self, base_dir, manifest: Mapping, *, batch_size: int = 64, device: str = "auto",
                 precision: str = "auto", threads: int = 1, probe_c: float = 1.0, seed: int = 0):
        configure_threads(threads)
        self.device = resolve_device(device)
        self.dtype = resolve_precision(self.device, precision)
        self.manifest = manifest
        self.batch_size = batch_size
        self.probe_c = probe_c
        self.seed = seed
        self.model = load_classifier(base_dir, num_labels=2).to(self.device).eval()
        self.body_prefix = self.model.base_model_prefix
        pad_id = self.model.config.pad_token_id
        self.pad_id = 0 if pad_id is None else int(pad_id)
        # the head's input is captured by a pre-hook on the first head module the forward pass calls
        self._captured: list[torch.Tensor] = []
        for name, module in self.model.named_children():
            if name != self.body_prefix and any(True for _ in module.parameters()):
                module.register_forward_pre_hook(self._capture)

    def _capture(self, module, args):
        if not self._captured:
            x = args[0]
            self._captured.append(x[:, 0] if x.ndim == 3 else x)

    def set_body(self, vector: np.ndarray) -> None:
        unflatten_into(self.model, vector, self.manifest)

    @torch.inference_mode()
    def features(self, data: Encoded, head: Mapping[str, torch.Tensor] | None = None):
        """Head-input features of every example (in input order), and the logits of `head` if given."""
        feats, logits = None, None
        for index in length_sorted_batches(data, self.batch_size):
            batch = {k: v.to(self.device) for k, v in collate(data, index, self.pad_id).items()}
            batch.pop("labels")
            self._captured.clear()
            with autocast(self.device, self.dtype):
                if head is None:
                    out = self.model(**batch).logits
                else:
                    # the saved head replaces the template's parameters for this call, whatever its label count
                    out = torch.func.functional_call(self.model, dict(head), args=(), kwargs=batch,
                                                     strict=False).logits
            f = self._captured[0].float().cpu().numpy()
            if feats is None:
                feats = np.empty((len(data), f.shape[1]), dtype=np.float32)
                logits = np.empty((len(data), out.shape[1]), dtype=np.float32) if head is not None else None
            feats[index] = f
            if head is not None:
                logits[index] = out.float().cpu().numpy()
        return feats, logits

    def evaluate(self, inputs: EvalInputs, head: Mapping[str, torch.Tensor] | None = None) -> list[dict]:
        """Rows for the fresh linear head ("probe") and, when `head` is given, the model's own head."""
        both = _concat(inputs.train, inputs.test)
        feats, logits = self.features(both, head)
        n_train = len(inputs.train)
        probe = fit_probe(feats[:n_train], inputs.train.labels, feats[n_train:], inputs.test.labels,
                          inputs.num_labels, self.probe_c, self.seed)
        rows = [{"eval_dataset": inputs.dataset, "head": "probe", **probe}]
        if head is not None:
            test_logits = torch.from_numpy(logits[n_train:])
            if test_logits.shape[1] != inputs.num_labels:
                raise InputError(f"{inputs.dataset}: the model's own head has {test_logits.shape[1]} outputs, "
                                 f"the dataset {inputs.num_labels} labels")
            labels = torch.tensor(inputs.test.labels)
            rows.append({"eval_dataset": inputs.dataset, "head": "own",
                         "accuracy": (test_logits.argmax(1) == labels).sum().item() / len(labels),
                         "loss": float(F.cross_entropy(test_logits, labels)), "n": len(labels)})
        return rows


def read_head(model_file, body_prefix: str) -> dict[str, torch.Tensor]:
    """The head's parameters (everything outside the body) of a saved model."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(model_file), framework="pt") as handle:
            return {k: handle.get_tensor(k).float() for k in handle.keys() if not k.startswith(body_prefix + ".")}
    except SafetensorError as err:
        raise InputError(f"{model_file}: not a readable safetensors file ({err})") from None
