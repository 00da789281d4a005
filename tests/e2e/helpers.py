"""Small helpers for tests that change the running server's adapters directory."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path


def publish(src: Path, adapters: Path, name: str) -> Path:
    """Copy an adapter in atomically (as `training publish` does), replacing any old version."""
    tmp = adapters / f".{name}.{uuid.uuid4().hex}"
    shutil.copytree(src, tmp)
    target = adapters / name
    if target.exists():
        old = adapters / f".{name}.old.{uuid.uuid4().hex}"
        target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old)
    else:
        tmp.rename(target)
    return target


def edit_config(adapter_dir: Path, **changes) -> None:
    path = adapter_dir / "adapter_config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))
