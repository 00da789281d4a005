"""What every contender provides to the harness (one implementation per file: ours.py,
stock_vllm.py, hf_peft.py)."""

from __future__ import annotations

import atexit
import itertools
import json
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import httpx

from loadtests.bench.assets import BASE_NAME, BenchAssets, lora_names
from loadtests.bench.procs import ServerProcess
from loadtests.bench.workloads import (
    JSON_SCHEMA,
    MAX_TOKENS,
    WORKLOAD_NAMES,
    Target,
    most_loras,
    prompt,
    response_format,
)

PYTHON = sys.executable
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")  # what a copied adapter needs


def publish_copy(source: Path, root: Path, name: str) -> Path:
    """Copy the adapter folder `source` to `root/name` the way training/publish.py publishes: the
    files go into a hidden staging sibling (`root/.NAME.tmp-*`, a name our server never serves),
    are synced, and the folder is renamed into place, so a server looking at `root` sees either
    no `name` or the complete adapter, never half of one. Refuses an existing `name` (a cold
    adapter is new by definition). Returns the target."""
    target = root / name
    if target.exists():
        raise FileExistsError(f"{target} exists: not a never-seen adapter")
    missing = [f for f in ADAPTER_FILES if not (source / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{source} is not an adapter (missing {missing})")
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root))
    try:
        for f in ADAPTER_FILES:
            shutil.copyfile(source / f, staging / f)
            with open(staging / f, "rb") as fh:
                os.fsync(fh.fileno())
        os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


class Contender:
    name: str = ""
    """Short id used in tables and plots."""
    description: str = ""
    workloads: tuple[str, ...] = WORKLOAD_NAMES
    """Workloads this contender runs, among WORKLOAD_NAMES (MANY: every `lora-N`, see
    workloads.family). The harness narrows it to the run's own names, `lora-N` ones included, so
    that prepare() readies only those (e.g. the LoRAs of the largest `lora-N`)."""

    def __init__(self, assets: BenchAssets, dtype: str = "bfloat16", max_loras: int | None = 8,
                 max_cpu_loras: int | None = None) -> None:
        self.assets = assets
        self.dtype = dtype
        """The engine's dtype (--dtype of the bench): bfloat16, or float32 where the CPU has no
        native bfloat16 (AVX2-only: bfloat16 matmuls are emulated, 10x slower)."""
        self.max_loras = max_loras
        """LoRAs in one running batch (the engine's adapter slots; --max-loras of the bench).
        None (`--max-loras default`): the server's own default, which for ours is sized from
        memory and for stock vLLM, which sizes nothing, is stock_vllm.DEFAULT_MAX_LORAS."""
        self.max_cpu_loras = max_cpu_loras or max_loras
        """LoRAs the engine keeps in host memory (LRU; --max-cpu-loras of the bench, default
        max_loras as both servers' own default; None with max_loras None)."""
        self.notes: list[str] = []  # what the report should say about this contender's run
        self._workdir: Path | None = None
        self._cold_ids = itertools.count()
        self._run_id = uuid.uuid4().hex[:8]

    def workdir(self) -> Path:
        """This contender's scratch folder (served adapter copies, cold adapters), made on first
        use outside the assets and removed by cleanup() (also at exit)."""
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix=f"bench-{self.name}-"))
            atexit.register(shutil.rmtree, self._workdir, ignore_errors=True)
        return self._workdir

    def cleanup(self) -> None:
        """Remove the scratch folder (after the server is stopped)."""
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def cold_name(self) -> str:
        """A name no server of this run has seen: cold-<run id>-<n>, n counting over all of this
        contender's cells and rounds."""
        return f"cold-{self._run_id}-{next(self._cold_ids)}"

    def loras(self) -> list[str]:
        """The LoRAs this contender's workloads use, to serve and load before the cells: the
        largest `lora-N`'s (a smaller `lora-N` uses its first ones), else the assets' own."""
        n = most_loras(self.workloads)
        return lora_names(n) if n else self.assets.loras

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

    def constrained(self, body: dict, target: Target) -> dict:
        """`body` with the `json` workload's `response_format` when `target` asks for it; such
        requests go without `ignore_eos` (our server refuses it with a constraint; the grammar
        ends the output), on every contender alike."""
        if not target.json_schema:
            return body
        body = {**body, "response_format": response_format()}
        body.pop("ignore_eos", None)
        return body

    def check_json_schema(self, url: str, model: str = BASE_NAME, n: int = 3) -> None:
        """Before the `json` cells: a few constrained requests, which must succeed and parse as
        JSON matching JSON_SCHEMA (this also compiles the grammar outside the timed cells). Their
        prompts (negative numbers) are none of the cells'."""
        import jsonschema

        lengths = []
        for i in range(n):
            body = self.constrained(self.completion_body(model, -1 - i), Target(json_schema=True))
            body["stream"] = False
            body.pop("stream_options", None)
            r = httpx.post(url + "/v1/completions", json=body, timeout=300)
            if r.status_code != 200:
                raise RuntimeError(f"json_schema request refused: HTTP {r.status_code}: {r.text[:300]}")
            answer = r.json()
            text = answer["choices"][0]["text"]
            try:
                jsonschema.validate(json.loads(text), JSON_SCHEMA)
            except (ValueError, jsonschema.ValidationError) as exc:
                raise RuntimeError(f"json_schema output does not match the schema ({exc}): {text[:200]!r}") from exc
            lengths.append(answer["usage"]["completion_tokens"])
        self.notes.append(f"json workload: {n} checked outputs match the schema, "
                          f"{'/'.join(map(str, lengths))} completion tokens")


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
