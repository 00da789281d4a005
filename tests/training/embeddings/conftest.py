"""Fixtures for the contrastive tests: paraphrase pair files and a few-step run on the tiny base."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.recipe import load_recipe
from training.embeddings.contrastive import SECTIONS, train_contrastive
from training.embeddings.data import write_paraphrase_data


def contrastive_recipe(base: Path, data: dict[str, Path], out: Path, /, **sections) -> object:
    """A `contrastive` recipe with fast defaults (8 steps of 8 rows, no evaluation), sections overridable."""
    recipe = {
        "model": {"base": str(base)},
        "data": {"train": str(data["train"]), "test": str(data["test"]), "max_length": 32},
        "train": {"output_dir": str(out), "max_steps": 8, "batch_size": 8, "learning_rate": 1e-2,
                  "logging_steps": 4, "threads": 1},
        "lora": {"rank": 8, "alpha": 16, "dropout": 0.0},
        "output": {"name": out.name, "evaluate": False},
    }
    for name, values in sections.items():
        recipe.setdefault(name, {}).update(values)
    return load_recipe("contrastive", SECTIONS, recipe)


@pytest.fixture(scope="module", autouse=True)
def on_one_thread(one_thread):
    """Every module of this folder runs torch on one thread (tests/conftest.py)."""


@pytest.fixture(scope="session")
def paraphrase_data(tmp_path_factory) -> dict[str, Path]:
    """80 training and 24 test rows of synthetic paraphrases (disjoint)."""
    return write_paraphrase_data(tmp_path_factory.mktemp("paraphrases"), n_train=80, n_test=24, seed=3)


@pytest.fixture(scope="session")
def contrastive_run(tiny, paraphrase_data, tmp_path_factory) -> tuple[Path, dict, Path]:
    """(run directory, summary, adapters dir) of an evaluated, published 8-step run."""
    root = tmp_path_factory.mktemp("contrastive")
    adapters = root / "adapters"
    out = root / "paraphrase-embed"
    summary = train_contrastive(contrastive_recipe(
        tiny["base"], paraphrase_data, out, output={"evaluate": True, "publish": True, "adapters_dir": str(adapters)}))
    return out, summary, adapters
