"""Training data: reading rows (file:line errors), formats, templates, tokenization, splits."""

from training.data.config import DataConfig
from training.data.dataset import DataError, Splits, describe, file_sha256, load_splits
from training.data.encode import encode, prompt_ids
from training.data.records import BadRow, Example, read_examples

__all__ = ["BadRow", "DataConfig", "DataError", "Example", "Splits", "describe", "encode", "file_sha256",
           "load_splits", "prompt_ids", "read_examples"]
