"""Shared fixtures: a tiny float32 model with adapters, and one real server for the session.

The server is a subprocess (`python -m server`) on the real vLLM engine, reached with the
official `openai` client; starting it once keeps the suite fast.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from training.tiny import (
    build_base_model,
    build_lora_adapter,
    build_prompt_tuning_adapter,
    build_tool_calling_lora,
)

API_KEY = "test-key"
# Scoped keys of the session server (--api-keys-file), beside the full-access API_KEY.
KEYS_FILE = """
keys:
  - key: key-loras
    adapters: ["lora-*"]
    base_model: false
  - key: key-manager
    adapters: ["*"]
    manage: true
"""


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module: matrices of the tiny models run fastest so (two threads
    on the suite's two busy cores are several times slower). Modules opt in with
    `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """Base model (float32) plus reference adapters kept outside the served directory."""
    root = tmp_path_factory.mktemp("tiny")
    base = build_base_model(root / "base", spec="test", dtype="float32")
    refs = root / "reference-adapters"
    return {
        "root": root,
        "base": base,
        "lora-a": build_lora_adapter(base, refs / "lora-a", rank=8, seed=1),
        "lora-b": build_lora_adapter(base, refs / "lora-b", rank=16, seed=2),
        "prompt-a": build_prompt_tuning_adapter(base, refs / "prompt-a", num_virtual_tokens=8, seed=3),
        # Trained (seconds) to call training.tiny.tool_calls' weather tool in the hermes format.
        "tool-lora": build_tool_calling_lora(base, refs / "tool-lora"),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# What every test server shares. Only the session's server compiles the model (the way `make
# serve` runs it); the others run eagerly: a compile costs 20-40 s per new engine configuration on
# a 2-core machine, and what they test (parallelism, pooling, shutdown, quantized bases) does not
# depend on it.
SERVER_FLAGS = ("--dtype", "float32", "--max-model-len", "512", "--api-key", API_KEY, "--kv-cache-gib", "0.25")
EAGER_FLAGS = ("--engine-arg", "enforce_eager=true")


class ServerProcess:
    def __init__(self, model: Path, adapters: Path, log: Path, *extra: str, compiled: bool = False,
                 env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.adapters = adapters
        self.log = log
        cmd = [sys.executable, "-m", "server", "--model", str(model), "--adapters", str(adapters),
               "--port", str(self.port), *SERVER_FLAGS, *(() if compiled else EAGER_FLAGS), *extra]
        self._log_file = open(log, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log_file, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})

    def wait_ready(self, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log.read_text()[-4000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"server not ready:\n{self.log.read_text()[-4000:]}")

    def stop(self) -> None:
        """Kill the server and its engine processes at once. A graceful stop takes 5-10 s here (the
        engine core's teardown, then the interpreter's) and nothing after it is checked; the tests
        of the drain (tests/e2e/test_operations.py) signal the server themselves."""
        import psutil

        try:
            family = [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            family = []
        for p in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        self.proc.wait(30)
        psutil.wait_procs(family, timeout=30)
        self._log_file.close()


@pytest.fixture(scope="session")
def server(tiny, tmp_path_factory):
    adapters = tmp_path_factory.mktemp("adapters")
    for name in ("lora-a", "lora-b", "prompt-a", "tool-lora"):
        shutil.copytree(tiny[name], adapters / name)
    keys = tiny["root"] / "keys.yaml"
    keys.write_text(KEYS_FILE)
    preferences = tiny["root"] / "feedback" / "preferences.jsonl"  # judgements made on /ui
    proc = ServerProcess(tiny["base"], adapters, tiny["root"] / "server.log",
                         "--tool-call-parser", "hermes", "--api-keys-file", str(keys),
                         "--preferences-file", str(preferences), compiled=True)
    proc.keys_file = keys
    proc.preferences_file = preferences
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=60)


@pytest.fixture(scope="session")
def http(server) -> httpx.Client:
    """Raw HTTP for what the openai client cannot send (malformed bodies, bad headers)."""
    with httpx.Client(base_url=server.url, timeout=60,
                      headers={"Authorization": f"Bearer {API_KEY}"}) as c:
        yield c
