"""Readers of raw files, including the quirks of the default study's sources."""
import bz2

import pytest

from workflow_scripts import readers
from workflow_scripts.io import InputError


def test_table_reads_bz2_csv_with_column_mapping():
    raw = 'category,text,movie\nfresh,"Great, really",a\nrotten,Dull,b\nplot,A man walks,c\n'
    frame = readers.read_table(bz2.compress(raw.encode()), "rt.csv.bz2", {"columns": {"text": "text", "label": "category"}})
    assert list(frame.columns) == ["text", "label"]
    assert frame["text"].tolist() == ["Great, really", "Dull", "A man walks"]
    assert frame["label"].tolist() == ["fresh", "rotten", "plot"]


def test_table_scores_become_signed_labels_and_weak_scores_are_dropped():
    raw = "id\tsentiment\ttext\r\n1\t2.7\tlove it\r\n2\t-0.2\tmeh\r\n3\t-1.5\thate \"this\r\n"
    frame = readers.read_table(raw.encode(), "tweets.txt", {"format": "tsv", "no_quoting": True, "min_abs_score": 0.5,
                                                           "columns": {"text": "text", "score": "sentiment"}})
    assert frame["text"].tolist() == ["love it", 'hate "this']
    assert frame["label"].tolist() == ["positive", "negative"]


def test_table_missing_column_names_the_file_and_the_columns():
    with pytest.raises(InputError, match=r"data\.csv: missing column\(s\) \['label'\]"):
        readers.read_table(b"text,stars\nok,5\n", "data.csv", {})


def test_table_unreadable_parquet_is_a_clear_error():
    with pytest.raises(InputError, match="x.parquet: cannot read as parquet"):
        readers.read_table(b"not parquet", "x.parquet", {})


def test_orange_tab_skips_the_type_and_flag_rows():
    raw = "Category\tText\nd\tstring\nclass\t\n\nsport\tgoal scored\nearn\tprofit up\n"
    frame = readers.read_orange_tab(raw.encode(), "r8.tab", {})
    assert frame.to_dict("records") == [{"text": "goal scored", "label": "sport"}, {"text": "profit up", "label": "earn"}]


def test_orange_tab_reports_a_ragged_row():
    raw = "Category\tText\nd\tstring\nclass\t\nsport\tgoal\textra\n"
    with pytest.raises(InputError, match="data row 4 has 3 fields"):
        readers.read_orange_tab(raw.encode(), "r8.tab", {})


def test_sms_rows_holding_several_messages_are_split():
    raw = ',spam,text\n0,0,hello there\n1,1,"WIN cash now\nham\tok see you\nspam\tfree entry"\n'
    frame = readers.read_sms_spam(raw.encode(), "sms-spam.csv", {})
    assert frame.to_dict("records") == [
        {"text": "hello there", "label": "ham"},
        {"text": "WIN cash now", "label": "spam"},
        {"text": "ok see you", "label": "ham"},
        {"text": "free entry", "label": "spam"},
    ]


def test_prefixed_lines_take_the_coarse_label():
    raw = "DESC:manner How did serfdom develop ?\nHUM:ind Who stole the cork ?\n\nDESC:manner How did serfdom develop ?\n"
    frame = readers.read_prefixed_lines(raw.encode(), "questions.txt", {})
    assert frame["label"].tolist() == ["DESC", "HUM", "DESC"]
    assert frame["text"].iloc[1] == "Who stole the cork ?"


def test_prefixed_lines_reject_a_line_without_label():
    with pytest.raises(InputError, match="line 2 is not"):
        readers.read_prefixed_lines(b"DESC:manner How ?\nno label here\n", "q.txt", {})


def test_label_folders_and_encoding_fallback():
    files = {"sport/1.txt": "Goal!".encode(), "business/2.txt": "Profit \xa3 up".encode("latin-1"), "README": b"x"}
    with pytest.raises(InputError, match="bbc/business/2.txt: not valid utf-8"):
        readers.read_label_folders(files, "bbc", {})
    frame = readers.read_label_folders(files, "bbc", {"fallback_encoding": "latin-1"})
    assert sorted(frame["label"]) == ["business", "sport"]
    assert "Profit \xa3 up" in frame["text"].tolist()
