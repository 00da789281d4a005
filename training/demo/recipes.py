"""The demo's recipes: the shipped training/recipes/*.yaml with `.demo/` moved under OUT and a time budget."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from training.recipe import Recipe, load_recipe, read_yaml
from training.devices import native_bf16

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def merge(raw: dict, overrides: dict | None) -> dict:
    """`raw` with `overrides` ({"section": {"key": value}}) laid over its sections."""
    for section, values in (overrides or {}).items():
        raw.setdefault(section, {}).update(values)
    return raw


def recipe_for(command: str, file: str, out: Path, adapters: Path, minutes: float, sections: dict | None = None,
               overrides: dict | None = None) -> Recipe:
    """A shipped demo recipe with its `.demo/` paths moved under `out` and a time budget.

    `sections`: the command's recipe sections (default: the training method's, training.methods);
    `overrides`: {"section": {"key": value}} laid over the recipe (tests: fewer steps, one thread)."""
    if sections is None:
        from training.methods import METHODS

        sections = METHODS[command].sections
    raw = json.loads(json.dumps(read_yaml(RECIPES / file)).replace('".demo/', f'"{out.as_posix()}/'))
    raw["train"]["max_minutes"] = minutes
    if any(f.name == "bf16" for f in dataclasses.fields(sections["train"])):
        # Without native bf16 the autocast is emulated: a step cost 3-20x a float32 one on an AVX2-only
        # 2-core CPU, and with a time budget that means 3-20x fewer steps.
        raw["train"]["bf16"] = raw["train"].get("bf16", False) and native_bf16()
    raw.setdefault("output", {})["adapters_dir"] = str(adapters)
    return load_recipe(command, sections, merge(raw, overrides), source=str(RECIPES / file))
