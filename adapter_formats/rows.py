"""A malformed data row, named by `file:line`: the one error type of every row reader.

Training's readers (training/data, training/rlhf, training/classification, training/embeddings)
raise or yield it; the server's feedback page catches it when a verdict cannot become a
preference row (adapter_formats/preferences.py).
"""

from __future__ import annotations


class BadRow(ValueError):
    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason
