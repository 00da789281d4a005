"""Contender 1: this server (`python -m server`), with the bench adapters in its adapter folder."""

from __future__ import annotations

from pathlib import Path

from loadtests.bench.assets import BASE_NAME
from loadtests.bench.contender import PYTHON, Contender, accepts_field
from loadtests.bench.procs import ServerProcess
from loadtests.bench.workloads import Target

KV_CACHE_GIB = 1
MAX_MODEL_LEN = 1024


class Ours(Contender):
    name = "ours"
    description = "this server (python -m server), LoRA always enabled"

    def start(self, port: int, log: Path, *extra: str, adapters: Path | None = None) -> ServerProcess:
        """`extra`: more server flags; `adapters`: serve another folder than the bench's own."""
        cmd = [PYTHON, "-m", "server", "--model", str(self.assets.base),
               "--adapters", str(adapters or self.assets.adapters),
               "--port", str(port), "--dtype", self.dtype, "--kv-cache-gib", str(KV_CACHE_GIB),
               "--max-loras", "8", "--max-lora-rank", "16", "--max-model-len", str(MAX_MODEL_LEN),
               "--log-level", "warning",  # no per-request access log, as for stock vLLM below
               *extra]
        return ServerProcess(self.name, cmd, log, port)

    def prepare(self, server: ServerProcess) -> None:
        self.ignore_eos = accepts_field(server.url, self.completion_body(BASE_NAME, 0), "ignore_eos", True)
        if not self.ignore_eos:
            self.notes.append("no `ignore_eos` in this server's API: fixed output length relies on the "
                              "bench model never emitting EOS")
        # Adapters load on first use: touch each once so loading is not timed in the first cell.
        for name in [*self.assets.loras, self.assets.soft_prompt]:
            accepts_field(server.url, self.completion_body(name, 0), "max_tokens", 1)
        if "json" in self.workloads:
            self.check_json_schema(server.url)

    def request(self, target: Target, i: int) -> tuple[str, dict]:
        extra = {"ignore_eos": True} if self.ignore_eos else {}
        if target.soft_prompt:
            if target.lora:  # stacked: the soft prompt rides on the LoRA through the extension field
                extra["soft_prompt"] = self.assets.soft_prompt
            model = target.lora or self.assets.soft_prompt
        else:
            model = target.lora or BASE_NAME
        return "/v1/completions", self.constrained(self.completion_body(model, i, **extra), target)


class OursMultiprocess(Ours):
    """The executor vLLM's CPU platform picks: the worker in a process of its own. Against `ours`
    (one worker inside the engine core, our default on CPU), it shows what that choice buys."""

    name = "ours-mp"
    description = "this server with --distributed-executor-backend mp (vLLM's CPU default)"

    def start(self, port: int, log: Path, *extra: str, adapters: Path | None = None) -> ServerProcess:
        return super().start(port, log, "--distributed-executor-backend", "mp", *extra, adapters=adapters)
