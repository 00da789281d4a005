"""Fixtures for the classifier tests: a learnable 3-class keyword data set and a trained `head` run."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.training.conftest import write_jsonl
from training.classification.train import SECTIONS, train_classifier
from training.recipe import load_recipe

# The label is the topic whose keyword the sentence contains; the other words carry no signal.
KEYWORDS = {"food": "bread", "music": "guitar", "sports": "football"}
FILLER = ("the", "a", "we", "saw", "today", "with", "old", "friends", "after", "it", "was", "quite", "nice",
          "near", "home", "in", "town", "again", "they", "said")


def keyword_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = sorted(KEYWORDS)[i % len(KEYWORDS)]
        words = rng.choices(FILLER, k=rng.randint(3, 6))
        words.insert(rng.randint(0, len(words)), KEYWORDS[label])
        rows.append({"text": " ".join(words), "label": label})
    return rows


@pytest.fixture(scope="session")
def keyword_data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("keywords")
    return {"train": write_jsonl(root / "train.jsonl", keyword_rows(120, seed=1)),
            "test": write_jsonl(root / "test.jsonl", keyword_rows(60, seed=2))}


def classifier_recipe(base: Path, data: dict[str, Path], out: Path, /, **sections):
    """A `classifier` recipe with fast defaults (a few float32 steps, no checkpoints), sections overridable."""
    recipe = {
        "model": {"base": str(base), "dtype": "float32"},
        "data": {"train": str(data["train"]), "test": str(data["test"]), "validation_fraction": 0.0,
                 "max_length": 32},
        "train": {"output_dir": str(out), "max_steps": 3, "batch_size": 8, "learning_rate": 1e-2,
                  "logging_steps": 1, "save_steps": 1000, "progress": False, "bf16": False, "threads": 1},
        "output": {"name": out.name},
    }
    for name, values in sections.items():
        recipe.setdefault(name, {}).update(values)
    return load_recipe("classifier", SECTIONS, recipe)


@pytest.fixture(scope="session")
def head_run(tiny, keyword_data, tmp_path_factory) -> Path:
    """RUN of a `head` run on the tiny base: RUN/model is a 3-label classifier (lora (b) starts from it)."""
    out = tmp_path_factory.mktemp("classifier") / "head"
    train_classifier(classifier_recipe(tiny["base"], keyword_data, out, classifier={"mode": "head"}))
    return out
