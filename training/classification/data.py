"""Labelled text for classifiers: JSONL rows `{"text": ..., "label": ...}`, the label set, splits.

    splits = load_labelled(ClassificationDataConfig(train="train.jsonl", test="test.jsonl"), seed=0)
    splits.labels               # ["negative", "neutral", "positive"]: sorted from the training file, or data.labels
    splits.train                # [LabelledText(where, text, label), ...]
    encode_texts(splits.train, tokenizer, splits.labels, max_length=256)   # datasets.Dataset: input_ids, labels

Rows are read like the other recipes' data (training.data: file:line in every error, bad rows
stop the run or are skipped and counted); validation and test come from their own files or are
held out of the training file by `training.data.dataset.split`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from training.data.config import check_fractions
from training.data.dataset import DataError, file_sha256, skip_or_raise, split
from training.data.records import BadRow, read_json_rows


@dataclass
class ClassificationDataConfig:
    """Labelled texts: JSONL rows {"text": ..., "label": ...}, splits and what to do with bad rows."""

    train: str = ""
    """Training file: JSONL rows with a `text` and a string `label`."""
    validation: str | None = None
    """Validation file (its loss is logged); if unset, `validation_fraction` of the training rows are held out."""
    test: str | None = None
    """Test file (accuracy, macro-F1, confusion matrix); if unset, `test_fraction` of the training rows are held out."""
    labels: list[str] = field(default_factory=list)
    """The label set, in the classifier's id order; empty: the training file's labels, sorted."""
    validation_fraction: float = 0.05
    """Fraction of training rows held out for validation when no validation file is given."""
    test_fraction: float = 0.1
    """Fraction of training rows held out for testing when no test file is given."""
    max_length: int = 256
    """Longest tokenized text; longer ones are cut at the end."""
    bad_rows: Literal["error", "skip"] = "error"
    """Rows with a missing or empty text, no label, a label outside data.labels, or invalid JSON:
    `error` (stop with file:line) or `skip` (skip and count)."""
    max_examples: int | None = None
    """Use only the first N valid rows of the training file (quick experiments)."""

    def validate(self) -> None:
        check_fractions(self)
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"data.labels has duplicates: {self.labels}")
        if self.max_length < 2:
            raise ValueError("data.max_length must be at least 2 tokens")


@dataclass(frozen=True)
class LabelledText:
    where: str
    """`file:line`, for error messages."""
    text: str
    label: str


@dataclass
class LabelledSplits:
    labels: list[str]
    train: list[LabelledText]
    validation: list[LabelledText]
    test: list[LabelledText]
    report: dict = field(default_factory=dict)


def read_labelled(path: str | Path) -> list[tuple[str, LabelledText | BadRow]]:
    """(`file:line`, LabelledText or BadRow) for every non-blank line of a JSONL file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    rows: list[tuple[str, LabelledText | BadRow]] = []
    for where, row in read_json_rows(path):
        if isinstance(row, BadRow):
            rows.append((where, row))
            continue
        text, label = row.get("text"), row.get("label")
        if not isinstance(text, str) or not text.strip():
            rows.append((where, BadRow(where, "missing or empty string field 'text'")))
        elif not isinstance(label, str) or not label:
            rows.append((where, BadRow(where, "missing or empty string field 'label'")))
        else:
            rows.append((where, LabelledText(where, text, label)))
    return rows


def _valid(path: str, labels: Sequence[str] | None, bad_rows: str, skipped: Counter,
           limit: int | None = None) -> list[LabelledText]:
    """The usable rows of `path`; with `labels`, a row with another label is a bad row."""
    out = []
    for where, item in read_labelled(path):
        if isinstance(item, LabelledText) and labels is not None and item.label not in labels:
            item = BadRow(where, f"label {item.label!r} is not one of {list(labels)} (data.labels, or the training "
                                 "file's)")
        if isinstance(item, BadRow):
            skip_or_raise(item, bad_rows, skipped)
            continue
        out.append(item)
        if limit is not None and len(out) >= limit:
            break
    return out


def load_labelled(cfg: ClassificationDataConfig, seed: int = 0) -> LabelledSplits:
    """Read, check and split the recipe's labelled data; the label set is data.labels or the
    training file's labels, sorted (so the same data always gives the same label ids)."""
    if not cfg.train:
        raise DataError("no training data: set data.train (or --train)")
    skipped: Counter = Counter()
    given = list(cfg.labels) or None
    rows = _valid(cfg.train, given, cfg.bad_rows, skipped, cfg.max_examples)
    labels = given or sorted({r.label for r in rows})
    if len(labels) < 2:
        raise DataError(f"{cfg.train}: a classifier needs at least 2 labels, found {labels}")
    train, val, test = split(rows, (0.0 if cfg.validation else cfg.validation_fraction,
                                    0.0 if cfg.test else cfg.test_fraction), seed)
    if cfg.validation:
        val = _valid(cfg.validation, labels, cfg.bad_rows, skipped)
    if cfg.test:
        test = _valid(cfg.test, labels, cfg.bad_rows, skipped)
    if not train:
        raise DataError(f"{cfg.train}: no usable training rows (skipped: {dict(skipped) or 'none'})")
    report = {
        "rows_read": len(rows) + sum(skipped.values()),
        "skipped_bad_rows": dict(skipped),
        "labels": labels,
        "train": {"examples": len(train), "per_label": dict(sorted(Counter(r.label for r in train).items()))},
        "validation": {"examples": len(val)},
        "test": {"examples": len(test)},
        "sha256": file_sha256(cfg.train, cfg.validation, cfg.test),
        "max_length": cfg.max_length,
    }
    return LabelledSplits(labels, train, val, test, report)


def encode_texts(rows: Sequence[LabelledText], tokenizer: PreTrainedTokenizerBase, labels: Sequence[str],
                 max_length: int) -> Dataset:
    """input_ids (as the server tokenizes a /classify input: the tokenizer's own special tokens,
    cut to max_length) and integer labels (index in `labels`); padding is the collator's job."""
    ids = tokenizer([r.text for r in rows], truncation=True, max_length=max_length)["input_ids"]
    index = {label: i for i, label in enumerate(labels)}
    return Dataset.from_dict({"input_ids": ids, "labels": [index[r.label] for r in rows]})
