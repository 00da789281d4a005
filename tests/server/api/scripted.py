"""A scripted stand-in for vLLM's AsyncLLM: the HTTP layer's tests produce any engine behaviour."""

from __future__ import annotations

from vllm.outputs import CompletionOutput, RequestOutput

from server.adapters.registry import adapter_name


class ScriptedEngine:
    """Yields the words of `reply` one per step, or raises `fail` at step `fail_at`.

    `replies`: a different reply per LoRA adapter name (requests without a LoRA get `reply`).
    """

    errored = False

    def __init__(self, reply="one two three", fail=None, fail_at=0, replies=None):
        self.reply, self.fail, self.fail_at = reply, fail, fail_at
        self.replies = replies or {}

    async def generate(self, prompt, params, request_id, lora_request=None):
        adapter = adapter_name(lora_request.lora_name) if lora_request else None
        reply = self.replies.get(adapter, self.reply)
        words = reply.split()
        for step, word in enumerate(words):
            if self.fail is not None and step == self.fail_at:
                raise self.fail
            last = step == len(words) - 1
            yield RequestOutput(
                request_id=request_id, prompt=None,
                prompt_token_ids=prompt.get("prompt_token_ids", []), prompt_logprobs=None,
                finished=last,
                outputs=[CompletionOutput(index=0, text=" " + word, token_ids=[10 + step],
                                          cumulative_logprob=None, logprobs=None,
                                          finish_reason="length" if last else None)])

    async def add_lora(self, request):
        return True

    async def remove_lora(self, lora_id):
        return True
