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

# What servers inherit: the environment as the suite starts, not what test modules' imports or
# tests change later in this process (TRL's import sets VLLM_LOGGING_LEVEL=ERROR, which silenced
# the engine's log lines that later tests read).
SERVER_ENVIRONMENT = dict(os.environ)

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


MODELS_ENV = "ADAPTER_SERVE_TEST_MODELS"
"""Where the suite keeps the models it builds (default: $XDG_CACHE_HOME/adapter-serve/test-models)."""


def models_cache() -> Path:
    if os.environ.get(MODELS_ENV):
        return Path(os.environ[MODELS_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "adapter-serve" / "test-models"


def cached_build(name: str, build, *inputs) -> Path:
    """`build(out_dir)`'s result, kept at a path named by what determines it: the builders' source
    (training/tiny), the library versions, `inputs`. The builders are deterministic, so the same
    path means the same files, run after run; and vLLM's compile cache, keyed by the model's path
    among other things, is warm from the second run of the suite on. Built beside the target and
    renamed into place (a concurrent build of the same key simply loses). Tests copy what they
    change (tests/e2e/helpers.publish), never write into these."""
    import hashlib
    import importlib.metadata
    import uuid

    digest = hashlib.sha256()
    for source in sorted((Path(__file__).parents[1] / "training" / "tiny").glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    for package in ("torch", "transformers", "peft", "tokenizers", "safetensors"):
        digest.update(importlib.metadata.version(package).encode() + b"\0")
    digest.update(repr([name, *(str(i) for i in inputs)]).encode())
    # KEY/NAME: the folder keeps its name (a server serves a model under its folder's name).
    keyed = models_cache() / f"{name}-{digest.hexdigest()[:16]}"
    if (keyed / name).is_dir():
        return keyed / name
    keyed.parent.mkdir(parents=True, exist_ok=True)
    building = keyed.parent / f".{keyed.name}.{uuid.uuid4().hex}"
    try:
        build(building / name)
        building.rename(keyed)
    except OSError:
        if not (keyed / name).is_dir():
            raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return keyed / name


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """Base model (float32) plus reference adapters kept outside the served directory (at stable
    paths: `cached_build`); `root` is this session's own folder for what tests write."""
    root = tmp_path_factory.mktemp("tiny")
    base = cached_build("base", lambda out: build_base_model(out, spec="test", dtype="float32"), "test", "float32")
    return {
        "root": root,
        "base": base,
        "lora-a": cached_build("lora-a", lambda out: build_lora_adapter(base, out, rank=8, seed=1), base),
        "lora-b": cached_build("lora-b", lambda out: build_lora_adapter(base, out, rank=16, seed=2), base),
        "prompt-a": cached_build("prompt-a", lambda out: build_prompt_tuning_adapter(
            base, out, num_virtual_tokens=8, seed=3), base),
        # Trained (seconds) to call training.tiny.tool_calls' weather tool in the hermes format.
        "tool-lora": cached_build("tool-lora", lambda out: build_tool_calling_lora(base, out), base),
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


def keyless(flags: tuple[str, ...]) -> tuple[str, ...]:
    """`flags` without `--api-key KEY`: for clients that send no key (TRL's AsyncGRPO)."""
    i = flags.index("--api-key")
    return flags[:i] + flags[i + 2:]


class ServerProcess:
    def __init__(self, model: Path, adapters: Path, log: Path, *extra: str, compiled: bool = False,
                 env: dict[str, str] | None = None, flags: tuple[str, ...] = SERVER_FLAGS) -> None:
        """`flags` replace SERVER_FLAGS (a server without the API key: `keyless(SERVER_FLAGS)`)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.adapters = adapters
        self.log = log
        cmd = [sys.executable, "-m", "server", "--model", str(model), "--adapters", str(adapters),
               "--port", str(self.port), *flags, *(() if compiled else EAGER_FLAGS), *extra]
        self._log_file = open(log, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log_file, stderr=subprocess.STDOUT,
                                     env={**SERVER_ENVIRONMENT, "PYTHONUNBUFFERED": "1", **(env or {})})

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
    trainer_dir = tmp_path_factory.mktemp("trainer")  # an RL trainer's output folder
    proc = ServerProcess(tiny["base"], adapters, tiny["root"] / "server.log",
                         "--tool-call-parser", "hermes", "--api-keys-file", str(keys),
                         "--preferences-file", str(preferences), "--lora-roots", str(trainer_dir),
                         # Room in the engine's LoRA cache above what the suite loads, so that
                         # an adapter version left in the engine shows (test_adapter_versions);
                         # few slots and a pinned adapter, so that slot eviction shows
                         # (test_lora_residency).
                         "--max-cpu-loras", "32", "--max-loras", "4", "--pin-adapters", "lora-a",
                         compiled=True)
    proc.keys_file = keys
    proc.trainer_dir = trainer_dir
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
