"""Small helpers for e2e tests: change a running server's adapters directory, start a pooling
server."""

from __future__ import annotations

import contextlib
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


# Pooling servers (--runner pooling) start with a 64-token window and a small KV cache: the
# start-up cost is the engine's, and inputs for the over-long checks stay short.
POOLING_FLAGS = ("--runner", "pooling", "--max-model-len", "64", "--kv-cache-gib", "0.05")


@contextlib.contextmanager
def pooling_server(model: Path, adapters: Path, log: Path, *flags: str):
    """A ready `python -m server --runner pooling` subprocess on `model`, stopped on exit."""
    from tests.conftest import ServerProcess

    proc = ServerProcess(model, adapters, log, *POOLING_FLAGS, *flags)
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()
