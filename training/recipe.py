"""Recipes: YAML files of typed config sections, overridable from the command line.

A recipe is a mapping of section name -> fields; every command declares which sections it
takes (each a dataclass with a docstring under every field, which becomes `--help`):

    # python -m training lora --config training/recipes/lora-alpaca.yaml
    model: {base: .demo/base}
    data: {train: data/alpaca.jsonl, template: alpaca}
    train: {learning_rate: 2.0e-4, max_steps: 300}
    lora: {rank: 16, alpha: 32}
    output: {name: my-lora, publish: true}

Precedence: dataclass defaults < recipe < flags given on the command line (`--rank 8`). Flags
are flat (`--max-steps`, not `--train.max-steps`), so field names are unique across sections.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from adapter_formats.cli_args import add_dataclass_arguments


class RecipeError(ValueError):
    """The recipe (or an override) is malformed: unknown key, wrong type, impossible value."""


@dataclasses.dataclass
class Recipe:
    """Validated config sections by name (`recipe.train.learning_rate`), plus where it came from."""

    command: str
    sections: dict[str, Any]
    source: str | None = None

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["sections"][name]
        except KeyError:
            raise AttributeError(name) from None

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: dataclasses.asdict(section) for name, section in self.sections.items()}


def _check_type(cls: type, name: str, tp: Any, value: Any) -> Any:
    """`value` converted to field type `tp`, or a RecipeError naming the field."""
    where = f"{cls.__name__}.{name}"
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_type(cls, name, inner[0], value)
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise RecipeError(f"{where} must be one of {list(typing.get_args(tp))}, got {value!r}")
        return value
    if origin is list:
        if isinstance(value, str):  # `target_modules: q_proj` means a one-element list
            value = [value]
        if not isinstance(value, list):
            raise RecipeError(f"{where} must be a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_check_type(cls, name, item, v) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{where} must be a mapping, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise RecipeError(f"{where} must be true or false, got {value!r}")
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if tp in (int, float, str) and not isinstance(value, tp) or isinstance(value, bool) and tp is not bool:
        raise RecipeError(f"{where} must be {tp.__name__}, got {value!r}")
    return value


def build_section(cls: type, values: Mapping[str, Any]) -> Any:
    """Instantiate dataclass `cls` from `values`, refusing unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise RecipeError(f"unknown key(s) {unknown} in section for {cls.__name__}; valid keys: {names}")
    section = cls(**{k: _check_type(cls, k, hints[k], v) for k, v in values.items()})
    check = getattr(section, "validate", None)
    if check:
        check()
    return section


def load_recipe(command: str, sections: Mapping[str, type], recipe: Mapping[str, Any] | None = None,
                overrides: Mapping[str, Any] | None = None, source: str | None = None) -> Recipe:
    """Merge defaults < `recipe` (sectioned) < `overrides` (flat field names) into a Recipe."""
    recipe = dict(recipe or {})
    unknown = sorted(set(recipe) - set(sections))
    if unknown:
        raise RecipeError(f"unknown section(s) {unknown} for `{command}`; valid sections: {sorted(sections)}")
    owner = {f.name: sec for sec, cls in sections.items() for f in dataclasses.fields(cls)}
    merged: dict[str, dict[str, Any]] = {}
    for sec in sections:
        values = recipe.get(sec) or {}
        if not isinstance(values, dict):
            raise RecipeError(f"section {sec!r} must be a mapping, got {values!r}")
        merged[sec] = dict(values)
    for key, value in (overrides or {}).items():
        merged[owner[key]][key] = value
    built = {sec: build_section(cls, merged[sec]) for sec, cls in sections.items()}
    return Recipe(command=command, sections=built, source=source)


def read_yaml(path: str | Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping of sections")
    return data


def build_parser(command: str, sections: Mapping[str, type], description: str) -> argparse.ArgumentParser:
    """`--config` plus one flag per field of every section, help text from the field docstrings."""
    parser = argparse.ArgumentParser(prog=f"python -m training {command}", description=description)
    parser.add_argument("--config", type=Path, help="recipe YAML (see training/recipes/)")
    seen: dict[str, str] = {}
    for sec, cls in sections.items():
        for f in dataclasses.fields(cls):
            if f.name in seen:  # flat flags need unique names; caught when a section is written
                raise RuntimeError(f"field {f.name!r} is in sections {seen[f.name]!r} and {sec!r}")
            seen[f.name] = sec
        group = parser.add_argument_group(sec, (cls.__doc__ or "").strip().split("\n")[0])
        add_dataclass_arguments(group, cls)  # type: ignore[arg-type]
    for action in parser._actions:
        action.required = False  # required fields may come from the recipe; checked after merging
    return parser


def parse_command_line(command: str, sections: Mapping[str, type], argv: Sequence[str],
                       description: str = "") -> Recipe:
    """Parse `argv` (after the command name): recipe file, then only the flags actually given."""
    parser = build_parser(command, sections, description)
    parser.parse_args(argv)  # --help and malformed values exit here, with the real defaults shown
    # Parse again with every default suppressed: what is left was typed on the command line.
    for action in parser._actions:
        if action.dest != "help":
            action.default = argparse.SUPPRESS
    given = vars(parser.parse_args(argv))
    config = given.pop("config", None)
    recipe = read_yaml(config) if config else {}
    if isinstance(recipe.get("command"), str) and recipe["command"] != command:
        raise RecipeError(f"{config} is a recipe for `{recipe['command']}`, not `{command}`")
    recipe.pop("command", None)
    return load_recipe(command, sections, recipe, given, source=str(config) if config else None)
