"""Contrastive pairs: JSONL rows (anchor, positive[, negative]) -> token ids as the server embeds them.

    splits = load_pairs(PairDataConfig(train="pairs.jsonl"), tokenizer, seed=0)
    splits.train            # [Pair]: anchor / positive / negative token ids (negative may be None)
    splits.report           # counts per split, skipped rows by reason, sha256 (training.data.describe reads it)

A row is {"anchor": "...", "positive": "...", "negative": "..."}; `negative` (a hard negative:
close to the anchor but not a match) is optional. Texts are tokenized as POST /v1/embeddings
tokenizes a string input: the tokenizer's own special tokens (BOS) added, no template. A text
longer than data.max_length is a bad row, not truncated: the embedding is the *last* token's
state, so cutting the end would train on a different text than the one the server embeds.

`paraphrase_pairs` makes synthetic rows for tests and the demo (see its docstring).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from training.data.config import check_fractions
from training.data.dataset import DataError, file_sha256, skip_or_raise, split
from training.data.records import BadRow, read_json_rows
from training.tiny.corpus import WORDS

FIELDS = ("anchor", "positive", "negative")


@dataclass
class PairDataConfig:
    """Contrastive data: (anchor, positive[, negative]) JSONL files and the held-out splits."""

    train: str = ""
    """Training JSONL: rows {anchor, positive} or {anchor, positive, negative} (negative: a hard negative)."""
    validation: str | None = None
    """Validation file (its in-batch loss is reported); if unset, `validation_fraction` of the training rows."""
    test: str | None = None
    """Test file for the retrieval evaluation; if unset, `test_fraction` of the training rows are held out."""
    validation_fraction: float = 0.05
    """Fraction of training rows held out for validation when no validation file is given."""
    test_fraction: float = 0.1
    """Fraction of training rows held out for testing when no test file is given."""
    max_length: int = 128
    """Longest text in tokens (BOS included); longer rows are bad rows (see bad_rows), never truncated."""
    bad_rows: Literal["error", "skip"] = "error"
    """Rows with missing or empty texts, invalid JSON or over-long texts: stop with file:line, or skip and count."""
    max_examples: int | None = None
    """Use only the first N valid rows of the training file (quick experiments)."""

    def validate(self) -> None:
        check_fractions(self)
        if self.max_length < 2:
            raise ValueError("data.max_length must be at least 2 tokens")


@dataclass(frozen=True)
class Pair:
    """One row's token ids, BOS first, as the server tokenizes the same texts."""

    where: str
    """`file:line` of the row."""
    anchor: list[int]
    positive: list[int]
    negative: list[int] | None = None


@dataclass
class PairSplits:
    train: list[Pair]
    validation: list[Pair]
    test: list[Pair]
    report: dict = field(default_factory=dict)


def pair_from_row(row: object, where: str, tokenizer, max_length: int) -> Pair:
    """One parsed row, tokenized; BadRow if it is malformed or a text is over max_length tokens."""
    if not isinstance(row, dict):
        raise BadRow(where, "a row must be a JSON object")
    ids: dict[str, list[int] | None] = {}
    for name in FIELDS:
        value = row.get(name)
        if value is None and name == "negative":
            ids[name] = None
            continue
        if value is None:
            raise BadRow(where, f"missing field {name!r}")
        if not isinstance(value, str):
            raise BadRow(where, f"field {name!r} must be a string, got {type(value).__name__}")
        if not value.strip():
            raise BadRow(where, f"empty {name!r}")
        ids[name] = tokenizer(value).input_ids  # add_special_tokens, as /v1/embeddings does
        if len(ids[name]) > max_length:
            raise BadRow(where, f"too long ({name} has {len(ids[name])} tokens, above data.max_length={max_length})")
    return Pair(where, ids["anchor"], ids["positive"], ids["negative"])


def read_pairs(path: str | Path, tokenizer, cfg: PairDataConfig, skipped: Counter,
               limit: int | None = None) -> list[Pair]:
    """The valid pairs of a JSONL file; bad rows raise DataError (bad_rows: error) or are counted."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pair file {path} does not exist")
    pairs = []
    for where, row in read_json_rows(path):
        try:
            if isinstance(row, BadRow):
                raise row
            pairs.append(pair_from_row(row, where, tokenizer, cfg.max_length))
        except BadRow as exc:
            skip_or_raise(exc, cfg.bad_rows, skipped)
            continue
        if limit is not None and len(pairs) >= limit:
            break
    return pairs


def load_pairs(cfg: PairDataConfig, tokenizer, seed: int = 0) -> PairSplits:
    """Read, tokenize and split: files where given, else fractions of the training rows (training.data's split)."""
    if not cfg.train:
        raise DataError("no training data: set data.train (or --train)")
    skipped: Counter = Counter()
    pairs = read_pairs(cfg.train, tokenizer, cfg, skipped, cfg.max_examples)
    train, val, test = split(pairs, (0.0 if cfg.validation else cfg.validation_fraction,
                                     0.0 if cfg.test else cfg.test_fraction), seed)
    if cfg.validation:
        val = read_pairs(cfg.validation, tokenizer, cfg, skipped)
    if cfg.test:
        test = read_pairs(cfg.test, tokenizer, cfg, skipped)
    if len(train) < 2:
        raise DataError(f"{cfg.train}: {len(train)} usable training rows; in-batch negatives need at least 2 "
                        f"(skipped: {dict(skipped) or 'none'})")
    report = {
        "rows_read": len(pairs) + sum(skipped.values()),
        "skipped_bad_rows": dict(skipped),
        "train": {"examples": len(train), "negatives": sum(p.negative is not None for p in train)},
        "validation": {"examples": len(val)},
        "test": {"examples": len(test)},
        "sha256": file_sha256(cfg.train, cfg.validation, cfg.test),
        "max_length": cfg.max_length,
    }
    return PairSplits(train, val, test, report)


# Synthetic paraphrases. Two content words (a, b) per row; anchors and positives say the same
# thing in different templates, and no template ends in a content word, so the last token alone
# says nothing: the embedding has to carry the words from earlier positions, which a random
# (frozen) base does poorly and a LoRA learns in a few hundred steps.
ANCHOR_TEMPLATES = ("The {a} was {b}.", "I saw a {b} {a} there.", "Look at the {a}, so {b}!")
POSITIVE_TEMPLATES = ("{b} is how the {a} looked.", "It was a {a}, and it was {b}.",
                      "They said the {a} seemed {b} today.")


def paraphrase_pairs(n: int, seed: int = 0) -> list[dict[str, str]]:
    """`n` rows {anchor, positive, negative} with distinct (a, b) word pairs from training.tiny.corpus.WORDS.

    anchor    "The river was quiet."                      (an anchor template)
    positive  "It was a river, and it was quiet."          (a positive template, same words)
    negative  "It was a river, and it was dark."           (the positive's template and first word,
                                                            another second word: a hard negative)
    Rows are distinct within one call, so cut one call's rows into train and test to keep them disjoint.
    """
    rng = random.Random(seed)  # private: callers' use of `random` cannot change the rows
    combos = [(a, b) for a in WORDS for b in WORDS if a != b]
    if n > len(combos):
        raise ValueError(f"at most {len(combos)} distinct paraphrase pairs, asked for {n}")
    rows = []
    for a, b in rng.sample(combos, n):
        positive = rng.choice(POSITIVE_TEMPLATES)
        other = rng.choice([w for w in WORDS if w not in (a, b)])
        rows.append({"anchor": rng.choice(ANCHOR_TEMPLATES).format(a=a, b=b),
                     "positive": positive.format(a=a, b=b),
                     "negative": positive.format(a=a, b=other)})
    return rows


def write_paraphrase_data(root: str | Path, n_train: int = 1200, n_test: int = 200, seed: int = 0) -> dict[str, Path]:
    """root/paraphrase-train.jsonl and root/paraphrase-test.jsonl: disjoint rows of one paraphrase_pairs call."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rows = paraphrase_pairs(n_train + n_test, seed)
    files = {"train": root / "paraphrase-train.jsonl", "test": root / "paraphrase-test.jsonl"}
    for name, part in (("train", rows[:n_train]), ("test", rows[n_train:])):
        files[name].write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
    return files
