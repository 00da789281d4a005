"""Load, validate, split and tokenize a recipe's data; report what was skipped or cut.

    splits = load_splits(DataConfig(train="data.jsonl"), tokenizer, seed=0)
    splits.train            # datasets.Dataset with input_ids, labels (what SFTTrainer takes)
    splits.test_examples    # held-out Examples, for generation-based evaluation
    splits.report           # counts: rows, skipped (by reason), truncated, per split
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from training.data.config import DataConfig
from training.data.encode import encode
from training.data.records import BadRow, Example, read_examples
from training.templates import PromptTemplate, resolve_template


class DataError(ValueError):
    """Bad data with `data.bad_rows: error` (or no usable rows at all); the message names file:line."""


@dataclass
class Splits:
    template: PromptTemplate
    train: Dataset
    validation: Dataset | None
    train_examples: list[Example]
    validation_examples: list[Example]
    test_examples: list[Example]
    report: dict = field(default_factory=dict)


def file_sha256(*paths: str | Path | None) -> str:
    digest = hashlib.sha256()
    for path in paths:
        if path:
            digest.update(Path(path).read_bytes())
    return "sha256:" + digest.hexdigest()


def skip_or_raise(row: BadRow, bad_rows: str, skipped: Counter) -> None:
    """`data.bad_rows`: stop at a bad row (error), or count it by reason and go on (skip)."""
    if bad_rows == "error":
        raise DataError(f"{row} (set data.bad_rows: skip to skip such rows)")
    skipped[row.reason.split(" (")[0]] += 1


def read_valid(path: str, fmt: str, bad_rows: str, skipped: Counter, limit: int | None = None) -> list[Example]:
    examples = []
    for _, item in read_examples(path, fmt):
        if isinstance(item, BadRow):
            skip_or_raise(item, bad_rows, skipped)
            continue
        examples.append(item)
        if limit is not None and len(examples) >= limit:
            break
    return examples


def split(examples: list[Example], fractions: tuple[float, float], seed: int) -> tuple[list, list, list]:
    """Shuffle with `seed` and cut off (validation, test) fractions; the rest is training."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_val, n_test = (int(round(f * len(examples))) for f in fractions)
    val = [examples[i] for i in order[:n_val]]
    test = [examples[i] for i in order[n_val:n_val + n_test]]
    train = [examples[i] for i in order[n_val + n_test:]]
    return train, val, test


def tokenize(examples: list[Example], tokenizer: PreTrainedTokenizerBase, template: PromptTemplate,
             cfg: DataConfig, counts: Counter) -> Dataset:
    rows = {"input_ids": [], "labels": []}
    for example in examples:
        try:
            encoded = encode(tokenizer, template, example, cfg.max_length, cfg.too_long, cfg.loss_on)
        except BadRow as exc:
            raise DataError(f"{exc} (set data.too_long: truncate or skip)") from None
        if encoded is None:
            counts["skipped_too_long"] += 1
            continue
        counts["truncated"] += encoded.truncated
        rows["input_ids"].append(encoded.input_ids)
        rows["labels"].append(encoded.labels)
    counts["examples"] += len(rows["input_ids"])
    return Dataset.from_dict(rows)


def load_splits(cfg: DataConfig, tokenizer: PreTrainedTokenizerBase, seed: int = 0) -> Splits:
    if not cfg.train:
        raise DataError("no training data: set data.train (or --train)")
    template = resolve_template(cfg.template, cfg.template_name)
    if template.uses_chat_template and not tokenizer.chat_template:
        raise DataError("data.template is 'chat' but the tokenizer has no chat template")
    skipped: Counter = Counter()
    examples = read_valid(cfg.train, cfg.format, cfg.bad_rows, skipped, cfg.max_examples)
    train, val, test = split(examples, (0.0 if cfg.validation else cfg.validation_fraction,
                                        0.0 if cfg.test else cfg.test_fraction), seed)
    if cfg.validation:
        val = read_valid(cfg.validation, cfg.format, cfg.bad_rows, skipped)
    if cfg.test:
        test = read_valid(cfg.test, cfg.format, cfg.bad_rows, skipped)
    if not train:
        raise DataError(f"{cfg.train}: no usable training rows (skipped: {dict(skipped) or 'none'})")
    train_counts: Counter = Counter()
    val_counts: Counter = Counter()
    train_ds = tokenize(train, tokenizer, template, cfg, train_counts)
    val_ds = tokenize(val, tokenizer, template, cfg, val_counts) if val else None
    if len(train_ds) == 0:
        raise DataError(f"{cfg.train}: every training row is longer than data.max_length={cfg.max_length}")
    report = {
        "rows_read": len(examples) + sum(skipped.values()),
        "skipped_bad_rows": dict(skipped),
        "train": dict(train_counts),
        "validation": dict(val_counts),
        "test": {"examples": len(test)},
        "sha256": file_sha256(cfg.train, cfg.validation, cfg.test),
        "max_length": cfg.max_length,
    }
    return Splits(template, train_ds, val_ds, train, val, test, report)


def describe(report: dict) -> str:
    """One line for the log: sizes, and how many rows were skipped or cut (never silently)."""
    t = report["train"]
    bad = sum(report["skipped_bad_rows"].values())
    parts = [f"train {t.get('examples', 0)}", f"validation {report['validation'].get('examples', 0)}",
             f"test {report['test']['examples']}"]
    notes = []
    if bad:
        notes.append(f"{bad} bad rows skipped {report['skipped_bad_rows']}")
    cut = t.get("truncated", 0) + report["validation"].get("truncated", 0)
    long = t.get("skipped_too_long", 0) + report["validation"].get("skipped_too_long", 0)
    if cut:
        notes.append(f"{cut} examples truncated to {report['max_length']} tokens")
    if long:
        notes.append(f"{long} over-long examples skipped")
    return "data: " + ", ".join(parts) + ("; " + "; ".join(notes) if notes else "")
