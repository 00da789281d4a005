"""Every RLHF recipe starts with its command and validates; --help shows the field docs."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.__main__ import COMMANDS, main
from training.recipe import load_recipe, read_yaml
from training.rlhf.commands import COMMANDS as RLHF, sections_of

RECIPES = sorted(Path("training/recipes/rlhf").glob("*.yaml"))


def test_there_is_a_recipe_per_command():
    commands = {p.read_text().split()[4] for p in RECIPES}
    assert set(RLHF) <= commands
    assert set(RLHF) | {"rlhf-demo"} <= set(COMMANDS)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_starts_with_its_command_and_validates(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# python -m training ") and f"--config {path}" in first
    command = first.split()[4]
    recipe = load_recipe(command, sections_of(command), read_yaml(path), source=str(path))
    assert recipe.model.base and recipe.data.train


def test_help_documents_ppo_fields(capsys):
    with pytest.raises(SystemExit):
        main(["ppo", "--help"])
    out = capsys.readouterr().out
    assert "--kl-target" in out and "Ziegler" in out and "--reward-model" in out
