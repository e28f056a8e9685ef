"""Loading transformers classification models the same way in every stage."""
from __future__ import annotations

from pathlib import Path


def load_classifier(base_dir: str | Path, num_labels: int, labels: list[str] | None = None):
    """The model at `base_dir` with a classification head for `num_labels` (fresh unless saved there)."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the "newly initialised head" warning is expected here
    hf_logging.disable_progress_bar()  # per-tensor loading bars would drown the job's own progress lines
    kwargs = {"num_labels": num_labels}
    if labels:
        kwargs["id2label"] = dict(enumerate(labels))
        kwargs["label2id"] = {name: i for i, name in enumerate(labels)}
    return AutoModelForSequenceClassification.from_pretrained(base_dir, use_safetensors=True, **kwargs)
