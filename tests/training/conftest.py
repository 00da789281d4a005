"""Fixtures for training tests: small JSONL task files and a helper to run a method in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.recipe import load_recipe
from training.methods import METHODS
from training.tiny import instruction_pairs


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def reverse_data(tmp_path_factory) -> Path:
    """120 Alpaca-style rows of the `reverse` task."""
    root = tmp_path_factory.mktemp("data")
    return write_jsonl(root / "reverse.jsonl", ({"instruction": p, "output": a}
                                                for p, a in instruction_pairs(seed=7, n=120, tasks=("reverse",))))


def bits(t):
    """A tensor's bit patterns: equal bits, not just equal values (-0.0 vs 0.0, NaN payloads)."""
    import torch

    return t.view({1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


def make_recipe(command: str, base: Path, train_file: Path, out: Path, /, **sections) -> object:
    """A recipe for `command` with fast defaults (few steps, no evaluation), sections overridable."""
    recipe = {
        "model": {"base": str(base)},
        "data": {"train": str(train_file), "max_length": 64},
        "train": {"output_dir": str(out), "max_steps": 4, "batch_size": 8, "learning_rate": 1e-2,
                  "logging_steps": 2, "save_steps": 2, "progress": False},
        "output": {"name": out.name, "evaluate": False},
    }
    for name, values in sections.items():
        recipe.setdefault(name, {}).update(values)
    return load_recipe(command, METHODS[command].sections, recipe)
