"""Flattening bodies: fixed order, head excluded, exact round trip, clear layout errors."""
import numpy as np
import pytest
import torch

from workflow_scripts import weights
from workflow_scripts.finetune import save_model
from workflow_scripts.io import InputError
from workflow_scripts.models import load_classifier


@pytest.fixture
def model(tiny_bert):
    torch.manual_seed(0)
    return load_classifier(tiny_bert, num_labels=3)


def test_manifest_covers_the_body_and_not_the_head(model):
    manifest = weights.build_manifest(model, "tiny", "h")
    names = [p["name"] for p in manifest["parameters"]]
    assert not any(n.startswith("classifier") for n in names)
    assert manifest["total"] == sum(p.numel() for p in model.base_model.parameters())
    offsets = [p["offset"] for p in manifest["parameters"]]
    assert offsets == sorted(offsets) and offsets[0] == 0
    assert manifest["body_prefix"] == "bert"


def test_flatten_unflatten_round_trip_is_exact(model, tiny_bert):
    manifest = weights.build_manifest(model, "tiny", "h")
    vector = weights.flatten_model(model, manifest)
    torch.manual_seed(1)
    other = load_classifier(tiny_bert, num_labels=3)
    with torch.no_grad():
        for p in other.base_model.parameters():
            p.add_(torch.randn_like(p))
    assert not np.array_equal(weights.flatten_model(other, manifest), vector)
    weights.unflatten_into(other, vector, manifest)
    np.testing.assert_array_equal(weights.flatten_model(other, manifest), vector)
    # same body and same head give the same outputs
    other.classifier.load_state_dict(model.classifier.state_dict())
    ids = torch.tensor([[101, 2023, 2003, 102]])
    model.eval(), other.eval()
    torch.testing.assert_close(model(input_ids=ids).logits, other(input_ids=ids).logits, rtol=0, atol=0)


def test_saved_model_flattens_to_the_same_vector(model, tmp_path):
    manifest = weights.build_manifest(model, "tiny", "h")
    save_model(model, tmp_path)
    from_file = weights.flatten_safetensors(tmp_path / "model.safetensors", manifest)
    np.testing.assert_array_equal(from_file, weights.flatten_model(model, manifest))
    weights.save_vector(tmp_path / "v.npy", from_file)
    loaded = weights.load_vector(tmp_path / "v.npy", manifest)
    assert isinstance(loaded, np.memmap) and loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, from_file)


def test_mismatched_architecture_is_named(model, tmp_path):
    manifest = weights.build_manifest(model, "tiny", "h")
    manifest["parameters"][0]["shape"] = [7, 7]
    save_model(model, tmp_path)
    with pytest.raises(InputError, match="body does not match the manifest of base model 'tiny'.*shape differs"):
        weights.flatten_safetensors(tmp_path / "model.safetensors", manifest)
    with pytest.raises(InputError, match="vector has shape"):
        weights.unflatten_into(model, np.zeros(3, dtype=np.float32), weights.build_manifest(model, "tiny", "h"))


def test_corrupted_safetensors_is_refused(model, tmp_path):
    manifest = weights.build_manifest(model, "tiny", "h")
    save_model(model, tmp_path)
    path = tmp_path / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(InputError, match="not a readable safetensors file"):
        weights.flatten_safetensors(path, manifest)


def test_vector_of_wrong_length_is_refused(model, tmp_path):
    manifest = weights.build_manifest(model, "tiny", "h")
    np.save(tmp_path / "short.npy", np.zeros(10, dtype=np.float32))
    with pytest.raises(InputError, match="short.npy: vector length"):
        weights.load_vector(tmp_path / "short.npy", manifest)
