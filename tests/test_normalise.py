"""Normalisation: labels, duplicates, leaks between splits, stratified splits and caps."""
import numpy as np
import pandas as pd
import pytest

from workflow_scripts.io import InputError
from workflow_scripts.normalise import normalise, stratified_take


def frame(texts, labels):
    return pd.DataFrame({"text": texts, "label": labels})


def spec(**kw):
    return {"split": {"seed": 0, "validation_fraction": 0.2, "test_fraction": 0.2}, **kw}


def test_labels_are_mapped_in_the_configured_order_and_dropped_labels_removed():
    raw = frame([f"t{i}" for i in range(30)], ["fresh", "rotten", "plot"] * 10)
    out, stats = normalise({"all": raw}, spec(labels=["rotten", "fresh"], drop_labels=["plot"]), "rt")
    assert stats["labels"] == ["rotten", "fresh"]
    assert stats["dropped"]["label_dropped"] == 10
    assert sum(stats["counts"].values()) == 20
    all_rows = pd.concat(out.values())
    assert set(all_rows["label"]) == {0, 1}
    assert (all_rows.set_index("text").loc["t0", "label"]) == 1  # fresh


def test_unknown_label_names_the_dataset_split_and_label():
    raw = frame(["a", "b", "c"], ["pos", "neg", "neutral"])
    with pytest.raises(InputError, match=r"dataset d, split train: unknown label\(s\) 'neutral'"):
        normalise({"train": raw}, spec(labels=["neg", "pos"]), "d")


def test_integer_labels_keep_their_meaning():
    raw = frame([f"t{i}" for i in range(40)], [10, 2] * 20)
    out, stats = normalise({"train": raw}, spec(), "d")
    assert stats["labels"] == ["2", "10"]


def test_duplicates_conflicts_and_test_texts_seen_in_train_are_removed():
    train = frame(["a", "a", "b", "c", "x", "x"] + [f"t{i}" for i in range(20)], [0, 0, 1, 0, 0, 1] + [0, 1] * 10)
    test = frame(["a", "d", "e", "x"], [0, 1, 0, 0])
    out, stats = normalise({"train": train, "test": test}, spec(), "d")
    texts = {s: set(f["text"]) for s, f in out.items()}
    assert "x" not in set().union(*texts.values())  # conflicting labels: every copy dropped
    assert "a" not in texts["test"] and "a" in texts["train"] | texts["validation"]
    assert texts["test"] == {"d", "e"}
    assert stats["dropped"]["duplicate"] == 1
    assert stats["dropped"]["conflicting_labels"] == 3
    assert stats["dropped"]["overlap_with_earlier_split"] == 1
    assert stats["splits_made"] == ["validation"]


def test_null_texts_are_empty_and_unlabelled_rows_dropped_only_when_asked():
    raw = pd.DataFrame({"text": [None, np.nan, *[f"t{i}" for i in range(30)]],
                        "label": ["pos", "neg", *(["pos", "neg", None] * 10)]})
    with pytest.raises(InputError, match=r"10 row\(s\) have no label \(the first: row 5 as read\)"):
        normalise({"all": raw}, spec(), "d")
    out, stats = normalise({"all": raw}, spec(drop_labels=[""]), "d")
    assert stats["dropped"]["empty"] == 2 and stats["dropped"]["label_dropped"] == 10
    assert not {"None", "nan"} & set(pd.concat(out.values())["text"])


def test_numbers_where_labels_lists_names_get_a_hint():
    raw = frame([f"t{i}" for i in range(20)], [0, 1] * 10)
    with pytest.raises(InputError, match=r"The source holds numbers where `labels` lists names"):
        normalise({"all": raw}, spec(labels=["neg", "pos"]), "d")


def test_a_label_both_listed_and_dropped_is_refused_and_hub_labels_may_be_absent():
    raw = frame([f"t{i}" for i in range(20)], ["a", "b"] * 10)
    with pytest.raises(InputError, match=r"label\(s\) \['b'\] are both in `labels` and in `drop_labels`"):
        normalise({"all": raw}, spec(labels=["a", "b"], drop_labels=["b", "c"]), "d")
    with pytest.raises(InputError, match=r"label\(s\) \['c'\] are listed in `labels` but no example has them"):
        normalise({"all": raw}, spec(labels=["a", "b", "c"]), "d")
    # a hub ClassLabel declares every class; a slice of the split may lack one
    _, stats = normalise({"all": raw}, spec(labels=["a", "b", "c"], labels_from="hub"), "d")
    assert stats["num_labels"] == 3


def test_empty_texts_are_dropped_and_empty_splits_refused():
    raw = frame(["  ", "a", "b"], [0, 1, 0])
    with pytest.raises(InputError, match="dataset d: the (validation|test) split is empty"):
        normalise({"train": raw}, spec(), "d")


def test_a_single_label_is_refused():
    with pytest.raises(InputError, match="needs at least two labels"):
        normalise({"train": frame(["a", "b"], ["x", "x"])}, spec(), "d")


def test_splits_are_stratified_seeded_and_capped():
    labels = np.array([0] * 900 + [1] * 100)
    raw = frame([f"t{i}" for i in range(1000)], labels)
    cfg = spec(split={"seed": 3, "validation_fraction": 0.1, "test_fraction": 0.2, "max_train": 100, "max_test": 50})
    out, stats = normalise({"train": raw}, cfg, "d")
    assert stats["counts"] == {"train": 100, "validation": 100, "test": 50}
    assert stats["label_counts"]["test"] == {"0": 45, "1": 5}
    assert stats["label_counts"]["validation"] == {"0": 90, "1": 10}
    again, _ = normalise({"train": raw}, cfg, "d")
    for split in out:
        pd.testing.assert_frame_equal(out[split], again[split])
    assert not set(out["test"]["text"]) & set(out["train"]["text"])


def test_stratified_take_hits_the_exact_count():
    rng = np.random.default_rng(0)
    labels = np.array([0] * 7 + [1] * 3 + [2] * 1)
    take = stratified_take(labels, 5, rng)
    assert len(take) == 5 and len(set(take)) == 5
