"""Turn a config dataclass into argparse flags, with each field's docstring as its help text.

Field docstrings (a string literal right under the field) are read from the source with `ast`,
the way vLLM documents its engine arguments, so the code and `--help` cannot drift apart.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
import types
import typing
from typing import Any


def attribute_docs(cls: type) -> dict[str, str]:
    """Map field name -> the docstring written under it in the class body."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _unwrap_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one `--field-name` flag per dataclass field."""
    docs = attribute_docs(cls)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        tp = _unwrap_optional(hints[f.name])
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = None if required else (
            f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        )
        kwargs: dict[str, Any] = {"help": docs.get(f.name, ""), "dest": f.name}
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(tp) is list:
            # `--flag a b` and `--flag a --flag b` alike (a repeated flag adds to the list).
            kwargs["action"] = "extend"
            kwargs["nargs"] = "*"
            kwargs["type"] = typing.get_args(tp)[0]
        elif typing.get_origin(tp) is typing.Literal:
            kwargs["choices"] = list(typing.get_args(tp))
        else:
            kwargs["type"] = tp
        if required:
            kwargs["required"] = True
        else:
            kwargs["default"] = default
            kwargs["help"] += " (default: %(default)s)"
        parser.add_argument(flag, **kwargs)


def parse_dataclass(cls: type, argv: list[str] | None = None, prog: str | None = None) -> Any:
    parser = argparse.ArgumentParser(prog=prog, description=(cls.__doc__ or "").strip())
    add_dataclass_arguments(parser, cls)
    return cls(**vars(parser.parse_args(argv)))
