"""Small helpers for e2e tests: change a running server's adapters directory, hold its engine,
start a pooling server."""

from __future__ import annotations

import contextlib
import json
import shutil
import uuid
from pathlib import Path

import httpx
import psutil


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


def engine_core(server) -> psutil.Process:
    """The server's engine-core process (vLLM titles it VLLM::EngineCore)."""
    for p in psutil.Process(server.proc.pid).children(recursive=True):
        if "EngineCore" in p.name() or "EngineCore" in " ".join(p.cmdline()):
            return p
    raise LookupError(f"no engine core under the server's pid {server.proc.pid}")


@contextlib.contextmanager
def engine_held(server):
    """Stop the server's engine core (SIGSTOP) for the block, continue it after (SIGCONT).

    Held, no request makes progress, on any machine: a request that must still be running when a
    deadline or a drain ends is made so by construction, not by being "long enough" (a faster
    CPU finished 16 x 450 tokens inside a 2 s drain). The API process keeps working: it admits,
    refuses, times out and aborts requests on its own; the scheduler (and, where vLLM runs it
    apart, the worker, which waits for the scheduler) picks up where it stopped.

    What asks the engine a question waits, though: a server's first request (vLLM asks the engine
    for its tasks once) and an adapter's first use (loaded into the engine). `warm` them first."""
    core = engine_core(server)
    core.suspend()
    try:
        yield core
    finally:
        if core.is_running():
            core.resume()


def warm(server, *models: str) -> None:
    """One token from each of `models` (default: the base model), so that holding the engine
    afterwards holds generation only (see `engine_held`)."""
    from tests.conftest import API_KEY

    for model in models or ("base",):
        r = httpx.post(server.url + "/v1/completions", headers={"Authorization": f"Bearer {API_KEY}"},
                       json={"model": model, "prompt": "hi", "max_tokens": 1}, timeout=120)
        r.raise_for_status()


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
