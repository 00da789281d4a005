"""What every contender provides to the harness (one implementation per file: ours.py,
stock_vllm.py, hf_peft.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from loadtests.bench.assets import BenchAssets
from loadtests.bench.procs import ServerProcess
from loadtests.bench.workloads import MAX_TOKENS, Target, prompt

PYTHON = sys.executable


class Contender:
    name: str = ""
    """Short id used in tables and plots."""
    description: str = ""
    workloads: tuple[str, ...] = ("base", "lora-1", "lora-8", "soft")
    """Workloads this contender runs."""

    def __init__(self, assets: BenchAssets) -> None:
        self.assets = assets
        self.notes: list[str] = []  # what the report should say about this contender's run

    def start(self, port: int, log: Path) -> ServerProcess:
        raise NotImplementedError

    def prepare(self, server: ServerProcess) -> None:
        """After the server is healthy (load adapters, probe features)."""

    def request(self, target: Target, i: int) -> tuple[str, dict]:
        """(path, body) of request i of a cell with this target: a streamed completion."""
        raise NotImplementedError

    def completion_body(self, model: str, i: int, **extra) -> dict:
        return {"model": model, "prompt": prompt(i), "max_tokens": MAX_TOKENS,
                "temperature": 0.0, "stream": True, "stream_options": {"include_usage": True}, **extra}


def accepts_field(url: str, body: dict, field: str, value) -> bool:
    """Whether a server answers 200 to `body` with `field` added (400 = unknown argument)."""
    probe = {**body, "stream": False, "max_tokens": 1, field: value}
    probe.pop("stream_options", None)
    r = httpx.post(url + "/v1/completions", json=probe, timeout=120)
    if r.status_code == 200:
        return True
    if r.status_code == 400:
        return False
    raise RuntimeError(f"probe of `{field}` failed: HTTP {r.status_code}: {r.text[:300]}")
