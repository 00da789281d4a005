"""The `data` section of a recipe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


def check_fractions(data) -> None:
    """The held-out fractions of any data section (instruction, labelled, pair data) are valid."""
    for name in ("validation_fraction", "test_fraction"):
        if not 0 <= getattr(data, name) < 1:
            raise ValueError(f"data.{name} must be in [0, 1)")
    if data.validation_fraction + data.test_fraction >= 1:
        raise ValueError("data.validation_fraction + data.test_fraction must be below 1")


@dataclass
class DataConfig:
    """Training data: files, format, prompt template, splits and what to do with bad rows."""

    train: str = ""
    """Training file: JSONL (instruction / messages / prompt-completion / text rows) or .txt (raw text)."""
    validation: str | None = None
    """Validation file; if unset, `validation_fraction` of the training rows are held out."""
    test: str | None = None
    """Test file (held out for evaluation); if unset, `test_fraction` of the training rows are held out."""
    format: Literal["auto", "instruction", "messages", "prompt_completion", "text"] = "auto"
    """Row format. instruction: `instruction`, optional `input`, `output` (Alpaca, Dolly's
    `context`/`response` also accepted); messages: chat `messages` list; prompt_completion:
    `prompt`, `completion`; text: `text` (unsupervised, loss on every token). auto: from the first row."""
    template: str = "alpaca"
    """Prompt template: alpaca, chat (the tokenizer's chat template), raw, or a custom string with one {prompt}."""
    template_name: str | None = None
    """Name recorded in the manifest for a custom template."""
    validation_fraction: float = 0.05
    """Fraction of training rows held out for validation when no validation file is given."""
    test_fraction: float = 0.05
    """Fraction of training rows held out for testing when no test file is given."""
    max_length: int = 512
    """Longest tokenized example (prompt + response + eos); longer ones follow `too_long`."""
    too_long: Literal["truncate", "skip", "error"] = "truncate"
    """Over-long rows: truncate (cut the end of the response; counted), skip (counted), or error (file:line)."""
    bad_rows: Literal["error", "skip"] = "error"
    """Rows with missing fields, empty responses, invalid JSON or non-UTF-8 bytes: stop with file:line, or skip and count."""
    loss_on: Literal["response", "all"] = "response"
    """Which tokens the loss covers: the response only (default) or the whole sequence."""
    max_examples: int | None = None
    """Use only the first N valid rows of the training file (quick experiments)."""
    packing: bool = False
    """Pack several examples into each row of max_length tokens (TRL best-fit decreasing), without
    padding; each keeps its own positions and attends only to itself. A batch is then batch_size
    packed rows. Fewer, fuller steps when examples are much shorter than max_length."""
    padding_free: bool = False
    """Concatenate each batch's examples into one row instead of padding them to the longest (no
    compute on padding; each example keeps its own positions and attention). Implied by packing."""

    def validate(self) -> None:
        check_fractions(self)
        if self.max_length < 8:
            raise ValueError("data.max_length must be at least 8 tokens")
        from training.templates import resolve_template

        resolve_template(self.template, self.template_name)
