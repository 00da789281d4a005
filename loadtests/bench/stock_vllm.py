"""Contender 2: stock vLLM's own OpenAI server on the same model and adapters.

LoRAs are loaded through its runtime API (`POST /v1/load_lora_adapter`); the soft prompt, which
stock vLLM cannot load, is sent as client-side `prompt_embeds` (base64 of `torch.save` bytes):
the soft prompt's rows followed by the token embeddings of the tokenized prompt (with BOS, as
vLLM would tokenize the text), the same input our server builds inside.
`StockVLLMNoLoRA` is the same server without --enable-lora, for base-model requests only.

`lora-N`: the N LoRAs of the run's largest `lora-N` are registered in prepare(). `cold`: before
each request a copy of lora-0 is made in the scratch folder (untimed) and registered under a new
name with `POST /v1/load_lora_adapter`, inside the request's clock: a client must do that before
its first request to an adapter stock vLLM has not seen, so it is part of that request's TTFT.
"""

from __future__ import annotations

import base64
import io
from functools import cached_property, partial
from pathlib import Path

import aiohttp
import httpx

from loadtests.bench.assets import BASE_NAME
from loadtests.bench.contender import PYTHON, Contender, publish_copy
from loadtests.bench.load import Prelude, PreludeError
from loadtests.bench.ours import KV_CACHE_GIB, MAX_MODEL_LEN
from loadtests.bench.procs import ServerProcess
from loadtests.bench.workloads import Target, prompt

DEFAULT_MAX_LORAS = 8
"""Its --max-loras and --max-cpu-loras with the bench's `--max-loras default`: stock vLLM does not
size its slots from memory as ours does, and its own default (1 slot) would run one adapter at a
time; 8 is the bench's usual value (the `lora-8` workload's LoRAs)."""


class StockVLLM(Contender):
    name = "stock-vllm"
    description = "vLLM 0.32 OpenAI server (python -m vllm.entrypoints.openai.api_server), --enable-lora"
    enable_lora = True

    def command(self, port: int) -> list[str]:
        cmd = [PYTHON, "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.assets.base),
               "--served-model-name", BASE_NAME, "--port", str(port), "--dtype", self.dtype,
               "--max-model-len", str(MAX_MODEL_LEN), "--kv-cache-memory-bytes", str(KV_CACHE_GIB * 2**30),
               "--enable-prompt-embeds", "--disable-uvicorn-access-log", "--uvicorn-log-level", "warning"]
        if self.enable_lora:
            max_loras = self.max_loras or DEFAULT_MAX_LORAS
            cmd += ["--enable-lora", "--max-lora-rank", "16", "--max-loras", str(max_loras),
                    "--max-cpu-loras", str(self.max_cpu_loras or max_loras)]
        return cmd

    def start(self, port: int, log: Path) -> ServerProcess:
        return ServerProcess(self.name, self.command(port), log, port,
                             env={"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"})

    def prepare(self, server: ServerProcess) -> None:
        if "soft" in self.workloads:
            self.prompt_embeds(0)  # load tokenizer and tensors now, not inside a timed cell
        if "json" in self.workloads:
            self.check_json_schema(server.url)
        if not self.enable_lora:
            return
        for name in self.loras():
            r = httpx.post(server.url + "/v1/load_lora_adapter",
                           json={"lora_name": name, "lora_path": str(self.assets.lora_path(name))}, timeout=120)
            if r.status_code != 200:
                raise RuntimeError(f"stock vLLM refused LoRA {name}: HTTP {r.status_code}: {r.text[:300]}")
        if "cold" in self.workloads:
            self.notes.append("cold workload: each request's TTFT includes its POST /v1/load_lora_adapter "
                              "(new name, a fresh copy of lora-0 made untimed just before): a client must "
                              "register an adapter stock vLLM has not seen before its first request to it")

    @staticmethod
    async def load_lora(session: aiohttp.ClientSession, name: str, path: Path) -> None:
        """The client's registration of a new adapter (timed in the `cold` workload)."""
        async with session.post("/v1/load_lora_adapter", json={"lora_name": name, "lora_path": str(path)}) as r:
            if r.status != 200:
                raise PreludeError(f"load_lora_adapter {name}: HTTP {r.status}: {(await r.text())[:300]}")

    @cached_property
    def _embedding_parts(self):
        # Imported lazily: only the soft-prompt workload needs torch in the load generator.
        import torch  # noqa: F401
        from safetensors import safe_open
        from transformers import AutoTokenizer

        with safe_open(str(self.assets.base / "model.safetensors"), framework="pt") as f:
            embed = f.get_tensor("model.embed_tokens.weight")  # [vocab, hidden]
        with safe_open(str(self.assets.adapters / self.assets.soft_prompt / "adapter_model.safetensors"),
                       framework="pt") as f:
            soft = f.get_tensor("prompt_embeddings")  # [virtual tokens, hidden]
        return AutoTokenizer.from_pretrained(str(self.assets.base)), embed, soft.to(embed.dtype)

    def prompt_embeds(self, i: int) -> str:
        import torch

        tokenizer, embed, soft = self._embedding_parts
        ids = tokenizer(prompt(i)).input_ids
        rows = torch.cat([soft, embed[ids]])  # [virtual + len(ids), hidden]
        buffer = io.BytesIO()
        torch.save(rows, buffer)
        return base64.b64encode(buffer.getvalue()).decode()

    def request(self, target: Target, i: int) -> tuple[str, dict] | tuple[str, dict, Prelude]:
        if target.cold:
            name = self.cold_name()
            path, body = self.request(Target(name), i)
            copy = self.workdir() / "cold" / name
            return path, body, Prelude(setup=partial(publish_copy, self.assets.lora_path(target.lora),
                                                     copy.parent, name),
                                       timed=partial(self.load_lora, name=name, path=copy))
        body = self.constrained(self.completion_body(target.lora or BASE_NAME, i, ignore_eos=True), target)
        if target.soft_prompt:
            del body["prompt"]  # with both, vLLM would run two prompts
            body["prompt_embeds"] = self.prompt_embeds(i)
        return "/v1/completions", body


class StockVLLMNoLoRA(StockVLLM):
    name = "stock-vllm-nolora"
    description = "the same vLLM server without --enable-lora (base model only)"
    enable_lora = False
    workloads = ("base",)
