"""classification_report equals hand-computed accuracy, macro-F1 and confusion matrix; table renders it."""

from __future__ import annotations

import pytest

from training.classification.metrics import classification_report, confusion_table, table


def test_report_matches_hand_computed_values():
    labels = ["a", "b", "c"]
    y_true = ["a", "a", "a", "b", "b", "c"]
    y_pred = ["a", "a", "b", "b", "c", "a"]
    report = classification_report(y_true, y_pred, labels)
    assert report["accuracy"] == pytest.approx(3 / 6)
    # Per label: a precision 2/3 recall 2/3 -> F1 2/3; b 1/2, 1/2 -> 1/2; c 0/1, 0/1 -> 0.
    assert report["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert report["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [1, 0, 0]]  # [true][predicted]
    assert report["labels"] == labels and report["examples"] == 6


def test_a_label_never_seen_counts_in_the_macro_average_and_the_matrix():
    report = classification_report(["a", "a"], ["a", "a"], ["a", "b"])
    assert report["accuracy"] == 1.0
    assert report["macro_f1"] == pytest.approx(0.5)  # a: F1 1, b: no support, no predictions -> 0
    assert report["confusion_matrix"] == [[2, 0], [0, 0]]


def test_tables_are_markdown():
    report = {**classification_report(["a", "b"], ["a", "a"], ["a", "b"]), "trainable_parameters": 1234,
              "seconds": 2.5}
    assert table([{"mode": "head", **report}]).splitlines() == [
        "| mode | accuracy | macro-F1 | trainable params | seconds |",
        "|---|---|---|---|---|",
        "| head | 0.500 | 0.333 | 1,234 | 2.500 |",
    ]
    assert confusion_table(report).splitlines()[2:] == ["| a | 1 | 0 |", "| b | 1 | 0 |"]
