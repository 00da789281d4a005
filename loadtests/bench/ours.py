"""Contender 1: this server (`python -m server`), with the bench adapters in its adapter folder.

With a `lora-N` or the `cold` workload it serves a writable copy of that folder (in its scratch
folder, removed afterwards): `lora-N` adds the extra LoRAs (up to the run's largest N), `cold`
publishes a new adapter into it before each request. Copies, not symlinks: the server refuses
files that resolve outside its adapters folder (adapter_formats/paths.py).
"""

from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path

from loadtests.bench.assets import BASE_NAME
from loadtests.bench.contender import PYTHON, Contender, accepts_field, publish_copy
from loadtests.bench.load import Prelude
from loadtests.bench.procs import ServerProcess
from loadtests.bench.workloads import Target, most_loras

KV_CACHE_GIB = 1
MAX_MODEL_LEN = 1024


class Ours(Contender):
    name = "ours"
    description = "this server (python -m server), LoRA always enabled"

    served: Path | None = None
    """The adapters folder the server runs on (set by start())."""
    flags: tuple[str, ...] = ()
    """What this variant of the server adds to the command line."""

    def command(self, port: int, *extra: str, adapters: Path | None = None) -> list[str]:
        """Without max_loras (`--max-loras default`) neither LoRA count is passed: the server
        sizes its slots itself (from --lora-slots-gib on CPU), which is what such a run measures."""
        loras = [] if self.max_loras is None else ["--max-loras", str(self.max_loras),
                                                   "--max-cpu-loras", str(self.max_cpu_loras)]
        return [PYTHON, "-m", "server", "--model", str(self.assets.base),
                "--adapters", str(adapters or self.assets.adapters),
                "--port", str(port), "--dtype", self.dtype, "--kv-cache-gib", str(KV_CACHE_GIB),
                *loras, "--max-lora-rank", "16", "--max-model-len", str(MAX_MODEL_LEN),
                "--log-level", "warning",  # no per-request access log, as for stock vLLM below
                *self.flags, *extra]

    def start(self, port: int, log: Path, *extra: str, adapters: Path | None = None) -> ServerProcess:
        """`extra`: more server flags; `adapters`: serve another folder than the bench's own."""
        if adapters is None and (most_loras(self.workloads) or "cold" in self.workloads):
            adapters = self.writable_adapters()
        self.served = adapters or self.assets.adapters
        return ServerProcess(self.name, self.command(port, *extra, adapters=adapters), log, port)

    def writable_adapters(self) -> Path:
        """A copy of the bench's adapters folder (plus the extra LoRAs of the largest `lora-N`) in
        the scratch folder: the server may serve it, the `cold` workload publish into it."""
        served = self.workdir() / "adapters"
        shutil.copytree(self.assets.adapters, served, dirs_exist_ok=True)
        for name in self.loras()[len(self.assets.loras):]:
            shutil.copytree(self.assets.lora_path(name), served / name, dirs_exist_ok=True)
        return served

    def prepare(self, server: ServerProcess) -> None:
        self.ignore_eos = accepts_field(server.url, self.completion_body(BASE_NAME, 0), "ignore_eos", True)
        if not self.ignore_eos:
            self.notes.append("no `ignore_eos` in this server's API: fixed output length relies on the "
                              "bench model never emitting EOS")
        # Adapters load on first use: touch each once, one after the other, so loading is not
        # timed in the first cell (with more LoRAs than the engine keeps in host memory, only the
        # last ones stay loaded: lora-N swaps).
        for name in [*self.loras(), self.assets.soft_prompt]:
            accepts_field(server.url, self.completion_body(name, 0), "max_tokens", 1)
        if "json" in self.workloads:
            self.check_json_schema(server.url)
        if "cold" in self.workloads:
            self.notes.append("cold workload: before each request a copy of lora-0 is published under a new "
                              "name into the served folder (staging folder + rename, untimed, as "
                              "`training publish` does); the TTFT covers the server finding, validating, "
                              "snapshotting and loading it on that first request")

    def request(self, target: Target, i: int) -> tuple[str, dict] | tuple[str, dict, Prelude]:
        if target.cold:
            name = self.cold_name()
            path, body = self.request(Target(name), i)
            return path, body, Prelude(setup=partial(publish_copy, self.assets.lora_path(target.lora),
                                                     self.served, name))
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
    flags = ("--distributed-executor-backend", "mp")


class OursSpawned(Ours):
    """The engine core spawned by vLLM once the server is ready for it, rather than prestarted
    (server/startup/prestart.py): the same engine either way, which this shows."""

    name = "ours-spawned"
    description = "this server with --no-prestart-engine"
    flags = ("--no-prestart-engine",)
