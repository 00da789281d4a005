"""Recipes: every shipped recipe parses and validates; precedence; helpful errors; --help."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.__main__ import COMMANDS, main
from training.classification.train import SECTIONS as CLASSIFIER_SECTIONS
from training.recipe import RecipeError, load_recipe, parse_command_line, read_yaml
from training.embeddings.contrastive import SECTIONS as CONTRASTIVE_SECTIONS
from training.methods import METHODS

RECIPES = sorted(Path("training/recipes").glob("*.yaml"))
# Recipe sections of every command with recipes in training/recipes/ (the RLHF ones have their own folder).
SECTIONS = {**{name: method.sections for name, method in METHODS.items()}, "classifier": CLASSIFIER_SECTIONS,
            "contrastive": CONTRASTIVE_SECTIONS}


def test_recipes_exist():
    assert len(RECIPES) >= 5


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_recipe_starts_with_its_command_and_validates(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# python -m training "), first
    command = first.split()[4]
    assert command in SECTIONS, f"{path}: unknown command {command!r}"
    assert f"--config {path}" in first
    recipe = load_recipe(command, SECTIONS[command], read_yaml(path), source=str(path))
    assert recipe.model.base and recipe.data.train


def test_command_line_overrides_recipe_and_recipe_overrides_defaults(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("lora: {rank: 4, alpha: 8}\ntrain: {learning_rate: 0.1}\n")
    recipe = parse_command_line("lora", METHODS["lora"].sections, ["--config", str(path), "--rank", "8",
                                                                   "--target-modules", "q_proj", "v_proj"])
    assert recipe.lora.rank == 8  # flag beats recipe
    assert recipe.lora.alpha == 8.0  # recipe beats default, int accepted for float
    assert recipe.train.learning_rate == 0.1
    assert recipe.lora.target_modules == ["q_proj", "v_proj"]
    assert recipe.train.batch_size == 8  # default


def test_flag_equal_to_default_still_overrides_recipe(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("train: {batch_size: 2}\n")
    recipe = parse_command_line("lora", METHODS["lora"].sections, ["--config", str(path), "--batch-size", "8"])
    assert recipe.train.batch_size == 8


@pytest.mark.parametrize("recipe, message", [
    ({"lora": {"rnak": 8}}, "unknown key(s) ['rnak']"),
    ({"lorra": {}}, "unknown section(s) ['lorra']"),
    ({"lora": {"rank": "big"}}, "LoraOptions.rank must be int"),
    ({"train": {"bf16": "yes"}}, "TrainConfig.bf16 must be true or false"),
    ({"data": {"format": "csv"}}, "DataConfig.format must be one of"),
    ({"data": {"template": "no placeholder"}}, "exactly one {prompt}"),
])
def test_bad_recipes_are_refused_with_the_reason(recipe, message):
    with pytest.raises((RecipeError, ValueError), match=None) as info:
        load_recipe("lora", METHODS["lora"].sections, recipe)
    assert message in str(info.value)


def test_help_comes_from_field_docstrings(capsys):
    with pytest.raises(SystemExit):
        main(["lora", "--help"])
    out = capsys.readouterr().out
    assert "Rank r of A [r, in] and B [out, r]" in out
    assert "--max-lora-rank" in out and "--publish" in out


def test_every_command_is_in_the_table():
    from training.rlhf.commands import COMMANDS as RLHF

    others = {"eval", "elo", "publish", "quantize", "rlhf-demo", "classifier", "features", "contrastive"}
    assert set(METHODS) | set(RLHF) | others == set(COMMANDS)
