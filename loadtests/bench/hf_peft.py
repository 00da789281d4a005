"""Contender 3: transformers+PEFT behind a minimal OpenAI-style server (hf_peft_server.py),
one request at a time, adapters switched per request: what a user without vLLM would run."""

from __future__ import annotations

from pathlib import Path

from loadtests.bench.assets import BASE_NAME
from loadtests.bench.contender import PYTHON, Contender
from loadtests.bench.procs import ServerProcess
from loadtests.bench.workloads import Target


class HFPeft(Contender):
    name = "hf-peft"
    description = "transformers+PEFT, one request at a time, set_adapter per request"
    workloads = ("base", "lora-1", "lora-8", "soft")  # no constrained decoding: not `json`

    def start(self, port: int, log: Path) -> ServerProcess:
        cmd = [PYTHON, "-m", "loadtests.bench.hf_peft_server", "--model", str(self.assets.base),
               "--adapters", str(self.assets.adapters), "--port", str(port)]
        return ServerProcess(self.name, cmd, log, port)

    def request(self, target: Target, i: int) -> tuple[str, dict]:
        if target.soft_prompt and target.lora:
            raise ValueError("the baseline has no stacked soft prompt + LoRA")
        model = self.assets.soft_prompt if target.soft_prompt else (target.lora or BASE_NAME)
        return "/v1/completions", self.completion_body(model, i, ignore_eos=True)
