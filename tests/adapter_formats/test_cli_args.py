"""A config dataclass -> argparse flags, help from the field docstrings (ServerConfig's own flags:
tests/server/test_cli_args.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from adapter_formats.cli_args import attribute_docs, parse_dataclass


@dataclass
class Toy:
    """A toy config."""

    name: str
    """Required: a name."""
    count: int = 3
    """How many."""
    fast: bool = False
    """Go fast."""
    mode: Literal["a", "b"] = "a"
    """Which mode."""
    tags: list[str] = field(default_factory=list)
    """Tags, repeatable."""
    limit: int | None = None
    """Optional limit."""


def test_docs_and_flags():
    assert attribute_docs(Toy) == {"name": "Required: a name.", "count": "How many.", "fast": "Go fast.",
                                   "mode": "Which mode.", "tags": "Tags, repeatable.", "limit": "Optional limit."}
    toy = parse_dataclass(Toy, ["--name", "x", "--count", "5", "--fast", "--mode", "b", "--tags", "p", "q",
                                "--tags", "r", "--limit", "7"])
    assert toy == Toy("x", 5, True, "b", ["p", "q", "r"], 7)
    assert parse_dataclass(Toy, ["--name", "x"]) == Toy("x")


def test_refusals_and_help(capsys):
    for argv in ([], ["--name", "x", "--mode", "c"], ["--name", "x", "--count", "many"]):
        with pytest.raises(SystemExit):
            parse_dataclass(Toy, argv)
    with pytest.raises(SystemExit):
        parse_dataclass(Toy, ["--help"], prog="toy")
    out = " ".join(capsys.readouterr().out.split())
    assert "A toy config." in out and "How many. (default: 3)" in out and "--no-fast" in out
