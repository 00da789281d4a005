"""Adapter names and paths that can never leave the adapters directory."""

from __future__ import annotations

import os
import re
from pathlib import Path

# A single path component: no separators, no leading dot (so no "..", no hidden files).
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
UNSAFE_WEIGHTS = ("adapter_model.bin", "adapter_model.pt", "adapter_model.pth")
MANIFEST_FILE = "manifest.json"


class UnsafePath(ValueError):
    pass


def is_valid_name(name: str) -> bool:
    return bool(_NAME.match(name))


def resolve_inside(root: Path, relative: str) -> Path:
    """`root/relative` with symlinks resolved, refused unless it stays inside `root`."""
    if not relative or "\x00" in relative or os.path.isabs(relative):
        raise UnsafePath(f"adapter path must be relative to the adapters directory: {relative!r}")
    root = root.resolve()
    target = (root / relative).resolve()
    if target == root or not target.is_relative_to(root):
        raise UnsafePath(f"adapter path {relative!r} is outside the adapters directory")
    return target


def adapter_files(directory: Path, root: Path) -> tuple[Path, Path]:
    """The config and weights files of an adapter directory, each checked to stay inside root.

    A symlinked file pointing elsewhere is refused: only what lies in the adapters directory is
    ever read.
    """
    root = root.resolve()
    files = []
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        path = (directory / name).resolve()
        if not path.is_relative_to(root):
            raise UnsafePath(f"{name} points outside the adapters directory")
        files.append(path)
    return files[0], files[1]
