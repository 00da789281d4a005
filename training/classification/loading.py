"""Loading a base as a sequence classifier (trained) or as a frozen backbone (features).

    model = load_classifier("BASE", ["neg", "pos"], torch.float32, tokenizer.pad_token_id)
    backbone, tokenizer = load_backbone("BASE")

A causal LM loaded either way has weights the new model does not use (lm_head) and, as a
classifier, one it must initialise (score): transformers' load report says so at warning level,
which for these loads is the expected outcome, so it is silenced.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as hf_logging


@contextmanager
def _quiet() -> Iterator[None]:
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def load_classifier(base: str | Path, labels: Sequence[str], dtype: torch.dtype, pad_token_id: int):
    """`base` as a sequence classifier for `labels` (a causal LM gets a new `score` head
    [num_labels, hidden], initialised by transformers)."""
    with _quiet():
        model = AutoModelForSequenceClassification.from_pretrained(
            base, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)}, dtype=dtype)
    # The logits are the last non-pad token's: without a pad id a padded batch cannot find it.
    model.config.pad_token_id = pad_token_id
    return model


def load_tokenizer(base: str | Path):
    """The base's tokenizer, with eos as the pad token where it has none (padding is right-side and
    masked, and the classifier reads the last non-pad token)."""
    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_backbone(base: str | Path):
    """The base's backbone (AutoModel: no LM or classification head) in float32, frozen, and its tokenizer."""
    with _quiet():
        model = AutoModel.from_pretrained(base, dtype=torch.float32)
    return model.eval().requires_grad_(False), load_tokenizer(base)
