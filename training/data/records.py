"""Reading data files row by row, with the file and line of every row, and normalizing formats.

Every row becomes an `Example`: either a prompt (plain text or chat messages) and a response,
or raw text. Problems raise `BadRow` naming `file:line`; the caller decides to stop or skip.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from adapter_formats.rows import BadRow
from training.templates import join_instruction

FORMATS = ("instruction", "messages", "prompt_completion", "text")


@dataclass(frozen=True)
class Example:
    where: str
    """`file:line`, for error messages and skipped-row reports."""
    prompt: str | None = None
    """The user's request (Alpaca prompt, or prompt text); None for raw text."""
    messages: tuple[dict, ...] | None = None
    """Chat turns before the answer (messages format); the answer is `response`."""
    response: str | None = None
    text: str | None = None
    """Raw text for unsupervised continued pre-training."""


def read_lines(path: Path, keep_blank: bool = False) -> Iterator[tuple[str, str | BadRow]]:
    """(`file:line`, decoded line or BadRow) for every line of a UTF-8 file (blank ones only if asked)."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield where, BadRow(where, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})")
                continue
            if keep_blank or line.strip():
                yield where, line


def read_json_rows(path: Path) -> Iterator[tuple[str, dict | BadRow]]:
    """(`file:line`, JSON object or BadRow) for every non-blank line of a JSONL file."""
    for where, line in read_lines(path):
        if isinstance(line, BadRow):
            yield where, line
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            yield where, BadRow(where, f"not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        yield where, row if isinstance(row, dict) else BadRow(where, "a row must be a JSON object")


def detect_format(row: dict) -> str:
    if "messages" in row:
        return "messages"
    if "instruction" in row:
        return "instruction"
    if "prompt" in row and "completion" in row:
        return "prompt_completion"
    if "text" in row:
        return "text"
    raise ValueError(f"cannot tell the format from keys {sorted(row)}; set data.format")


def _text(row: dict, key: str, where: str, required: bool = True) -> str | None:
    value = row.get(key)
    if value is None:
        if required:
            raise BadRow(where, f"missing field {key!r}")
        return None
    if not isinstance(value, str):
        raise BadRow(where, f"field {key!r} must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise BadRow(where, f"empty {key!r}")
    return value


def to_example(row: dict, fmt: str, where: str) -> Example:
    """Normalize one parsed row of format `fmt`."""
    if fmt == "instruction":
        # Dolly names the fields context/response; Alpaca input/output.
        out_key = "output" if "output" in row or "response" not in row else "response"
        in_key = "input" if "input" in row else "context"
        instruction = _text(row, "instruction", where)
        response = _text(row, out_key, where)
        return Example(where, prompt=join_instruction(instruction, _text(row, in_key, where, required=False)),
                       response=response)
    if fmt == "prompt_completion":
        return Example(where, prompt=_text(row, "prompt", where), response=_text(row, "completion", where))
    if fmt == "text":
        return Example(where, text=_text(row, "text", where))
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRow(where, "field 'messages' must be a non-empty list")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") \
                or not isinstance(m.get("content"), str):
            raise BadRow(where, f"messages[{i}] must be {{'role': system|user|assistant, 'content': str}}")
    if messages[-1]["role"] != "assistant" or not messages[-1]["content"].strip():
        raise BadRow(where, "the last message must be a non-empty assistant answer")
    users = [m for m in messages[:-1] if m["role"] == "user"]
    if not users:
        raise BadRow(where, "messages has no user turn")
    return Example(where, prompt=users[-1]["content"], messages=tuple(messages[:-1]),
                   response=messages[-1]["content"])


def read_examples(path: str | Path, fmt: str = "auto") -> Iterator[tuple[str, Example | BadRow]]:
    """(`file:line`, Example or BadRow) for each row; .txt files give one text example per paragraph."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    if path.suffix == ".txt":
        yield from _read_text_file(path)
        return
    for where, row in read_json_rows(path):
        if isinstance(row, BadRow):
            yield where, row
            continue
        if fmt == "auto":
            try:
                fmt = detect_format(row)
            except ValueError as exc:
                raise BadRow(where, str(exc)) from None
        try:
            yield where, to_example(row, fmt, where)
        except BadRow as exc:
            yield where, exc


def _read_text_file(path: Path) -> Iterator[tuple[str, Example | BadRow]]:
    """Paragraphs (separated by blank lines) of a text file, each an Example at its first line."""
    paragraph: list[str] = []
    first = ""
    for where, line in [*read_lines(path, keep_blank=True), (f"{path}:end", "")]:
        if isinstance(line, BadRow):
            yield where, line
        elif line.strip():
            first = first if paragraph else where
            paragraph.append(line)
        elif paragraph:
            yield first, Example(first, text="".join(paragraph).rstrip("\n"))
            paragraph = []
