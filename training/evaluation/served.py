"""Greedy answers from a running server (this one, or any OpenAI-compatible one), for `eval` and `elo`.

    python -m training eval --base B --adapter A --data held_out.jsonl --server http://127.0.0.1:8000 \
        [--api-key K] [--concurrency 8] [--model NAME] [--base-model NAME]

Each prompt is sent to /v1/completions as the very token ids the in-process evaluation generates
from (the endpoint takes a list of ids as `prompt`), with temperature 0 and max_tokens =
max_new_tokens, so the two paths answer the same question and their outputs can be compared.
The answer is decoded here from the returned ids (`return_token_ids`, an extension of this
server) with the same tokenizer call as in-process; other servers' `text` is used as is.
Requests run concurrently on a thread pool, so the server batches them.

Perplexity is not available this way: it needs the prompt's log-probabilities, and this server
refuses `echo` together with `logprobs` (server/serving/completions.py) and has no `prompt_logprobs`.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import openai
from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class Served:
    """Where to generate: a server's URL, its key, and how many requests to keep in flight."""

    url: str
    api_key: str | None = None
    concurrency: int = 8
    timeout: float = 600.0

    def client(self) -> openai.OpenAI:
        base = self.url.rstrip("/")
        base = base if base.endswith("/v1") else base + "/v1"
        # The openai client insists on a key; a server without --api-key ignores whatever is sent.
        key = self.api_key or os.environ.get("OPENAI_API_KEY") or "none"
        return openai.OpenAI(base_url=base, api_key=key, timeout=self.timeout, max_retries=2)


def served_answers(served: Served, model: str, tokenizer: PreTrainedTokenizerBase, prompts: list[list[int]],
                   max_new_tokens: int) -> list[str]:
    """Greedy completion of each prompt (token ids) by served `model`, in order."""
    client = served.client()

    def answer(ids: list[int]) -> str:
        r = client.completions.create(model=model, prompt=ids, max_tokens=max_new_tokens, temperature=0,
                                      extra_body={"return_token_ids": True})
        choice = r.choices[0]
        token_ids = (choice.model_extra or {}).get("token_ids")
        return choice.text if token_ids is None else tokenizer.decode(token_ids, skip_special_tokens=True)

    with ThreadPoolExecutor(max(served.concurrency, 1)) as pool:
        return list(pool.map(answer, prompts))
