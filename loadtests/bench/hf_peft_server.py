"""The transformers+PEFT baseline: what a plain user would run. A minimal OpenAI-style
`/v1/completions` (streaming SSE or not) over one PeftModel holding every LoRA, `set_adapter`
per request, one request at a time behind a lock, greedy decoding with a KV cache.

    .venv/bin/python -m loadtests.bench.hf_peft_server --model DIR --adapters DIR --port 8002

`model` is the base model's directory name, a LoRA adapter's folder name, or a prompt-tuning
adapter's folder name (its embeddings are put in front of the prompt's, as PEFT does).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
import uuid
from pathlib import Path

import torch
import uvicorn
from fastapi import FastAPI, HTTPException
from fastapi.responses import StreamingResponse
from peft import PeftModel
from pydantic import BaseModel
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer


class CompletionRequest(BaseModel):
    model: str
    prompt: str
    max_tokens: int = 16
    stream: bool = False
    stream_options: dict | None = None
    temperature: float | None = None  # decoding is greedy whatever is asked
    ignore_eos: bool = False


class Baseline:
    def __init__(self, model_dir: Path, adapters_dir: Path) -> None:
        self.base_name = model_dir.name
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        base = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype="auto").eval()
        self.loras: list[str] = []
        self.soft_prompts: dict[str, torch.Tensor] = {}
        self.model = None
        for path in sorted(p for p in adapters_dir.iterdir() if (p / "adapter_config.json").exists()):
            kind = json.loads((path / "adapter_config.json").read_text())["peft_type"]
            if kind == "LORA":
                if self.model is None:
                    self.model = PeftModel.from_pretrained(base, str(path), adapter_name=path.name,
                                                           autocast_adapter_dtype=False)
                else:
                    self.model.load_adapter(str(path), adapter_name=path.name, autocast_adapter_dtype=False)
                self.loras.append(path.name)
            elif kind == "PROMPT_TUNING":
                with safe_open(str(path / "adapter_model.safetensors"), framework="pt") as f:
                    self.soft_prompts[path.name] = f.get_tensor("prompt_embeddings").to(base.dtype)
        self.model = (self.model or base).eval()
        self.embed = base.get_input_embeddings()
        self.eos = self.tokenizer.eos_token_id
        self.step_lock = threading.Lock()  # one forward at a time, even if a cancelled request's step is still running
        self.request_lock = asyncio.Lock()  # one request at a time

    def select(self, name: str) -> torch.Tensor | None:
        """Switch adapters for `name`; returns the soft prompt to put first, if any."""
        if name in self.loras:
            self.model.base_model.enable_adapter_layers()
            self.model.set_adapter(name)
            return None
        if isinstance(self.model, PeftModel):
            self.model.base_model.disable_adapter_layers()
        if name in self.soft_prompts:
            return self.soft_prompts[name]
        if name == self.base_name:
            return None
        raise HTTPException(404, f"model {name!r} not found")

    @torch.inference_mode()
    def prefill(self, ids: list[int], soft: torch.Tensor | None):
        embeds = self.embed(torch.tensor([ids]))  # [1, T, hidden]
        if soft is not None:
            embeds = torch.cat([soft[None], embeds], dim=1)  # [1, V + T, hidden]
        with self.step_lock:
            out = self.model(inputs_embeds=embeds, use_cache=True)
        return out.logits[0, -1].argmax().item(), out.past_key_values

    @torch.inference_mode()
    def decode(self, token: int, past):
        with self.step_lock:
            out = self.model(input_ids=torch.tensor([[token]]), past_key_values=past, use_cache=True)
        return out.logits[0, -1].argmax().item(), out.past_key_values

    async def generate(self, request: CompletionRequest):
        """Yields (token id, text) one token at a time, holding the request lock throughout."""
        async with self.request_lock:
            soft = self.select(request.model)
            ids = self.tokenizer(request.prompt).input_ids
            token, past = await asyncio.to_thread(self.prefill, ids, soft)
            for n in range(request.max_tokens):
                yield token, self.tokenizer.decode([token])
                if (token == self.eos and not request.ignore_eos) or n + 1 == request.max_tokens:
                    break
                token, past = await asyncio.to_thread(self.decode, token, past)


def create_app(baseline: Baseline) -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.post("/v1/completions")
    async def completions(request: CompletionRequest):
        rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        baseline.select(request.model)  # 404 before streaming starts

        def chunk(text: str, finish: str | None, usage: dict | None = None) -> str:
            body = {"id": rid, "object": "text_completion", "created": created, "model": request.model,
                    "choices": [{"index": 0, "text": text, "finish_reason": finish}] if usage is None else [],
                    "usage": usage}
            return f"data: {json.dumps(body)}\n\n"

        prompt_tokens = len(baseline.tokenizer(request.prompt).input_ids)

        if request.stream:
            async def events():
                n = 0
                async for _, text in baseline.generate(request):
                    n += 1
                    yield chunk(text, None)
                yield chunk("", "length" if n == request.max_tokens else "stop")
                if (request.stream_options or {}).get("include_usage"):
                    yield chunk("", None, {"prompt_tokens": prompt_tokens, "completion_tokens": n,
                                           "total_tokens": prompt_tokens + n})
                yield "data: [DONE]\n\n"
            return StreamingResponse(events(), media_type="text/event-stream")

        texts = [text async for _, text in baseline.generate(request)]
        return {"id": rid, "object": "text_completion", "created": created, "model": request.model,
                "choices": [{"index": 0, "text": "".join(texts),
                             "finish_reason": "length" if len(texts) == request.max_tokens else "stop"}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(texts),
                          "total_tokens": prompt_tokens + len(texts)}}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench.hf_peft_server", description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--adapters", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; 1 as vLLM's CPU worker uses when serving (2 threads on the "
                             "shared 2-core bench machine were ~9x slower: OpenMP barriers spin)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    uvicorn.run(create_app(Baseline(args.model, args.adapters)), host=args.host, port=args.port,
                log_level="warning")


if __name__ == "__main__":
    main()
