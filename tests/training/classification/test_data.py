"""Labelled data: the label set, held-out splits, and bad rows named by file:line."""

from __future__ import annotations

import pytest

from tests.training.conftest import write_jsonl
from training.classification.data import ClassificationDataConfig, load_labelled
from training.data import DataError


def test_labels_are_the_training_files_sorted_and_splits_are_held_out(tmp_path):
    rows = [{"text": f"row {i}", "label": ("zeta", "alpha", "mid")[i % 3]} for i in range(30)]
    splits = load_labelled(ClassificationDataConfig(train=str(write_jsonl(tmp_path / "t.jsonl", rows)),
                                                    validation_fraction=0.1, test_fraction=0.2))
    assert splits.labels == ["alpha", "mid", "zeta"]
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (21, 3, 6)
    assert not {r.text for r in splits.test} & {r.text for r in splits.train}


def test_a_label_outside_the_set_is_a_bad_row(tmp_path):
    train = write_jsonl(tmp_path / "t.jsonl", [{"text": "x", "label": "a"}, {"text": "y", "label": "b"}])
    test = write_jsonl(tmp_path / "test.jsonl", [{"text": "z", "label": "a"}, {"text": "w", "label": "c"}])
    with pytest.raises(DataError, match=r"test.jsonl:2: label 'c' is not one of \['a', 'b'\]"):
        load_labelled(ClassificationDataConfig(train=str(train), test=str(test)))
    skipped = load_labelled(ClassificationDataConfig(train=str(train), test=str(test), bad_rows="skip"))
    assert [r.text for r in skipped.test] == ["z"] and skipped.report["skipped_bad_rows"]


def test_rows_without_text_are_refused_with_file_and_line(tmp_path):
    train = write_jsonl(tmp_path / "t.jsonl", [{"text": "x", "label": "a"}, {"label": "b"}])
    with pytest.raises(DataError, match=r"t.jsonl:2: missing or empty string field 'text'"):
        load_labelled(ClassificationDataConfig(train=str(train)))
