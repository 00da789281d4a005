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
        self.loras: set[int] = set()

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

    paused = False

    async def add_lora(self, request):
        self.loras.add(request.lora_int_id)
        return True

    async def list_loras(self):
        return set(self.loras)

    pinned: set[int] = set()

    async def pin_lora(self, lora_id):
        self.pinned = self.pinned | {lora_id}
        return True

    async def collective_rpc(self, method, timeout=None, args=(), kwargs=None):
        """The worker extension's answer (server.in_engine.lora_residency): every LoRA in the
        cache, the pinned ones and then the newest in the slots (max_loras of them)."""
        assert method == "adapter_serve_lora_residency", method
        slots = [*sorted(self.pinned & self.loras),
                 *sorted(self.loras - self.pinned, reverse=True)][:self.vllm_config.lora_config.max_loras]
        return [{"cache": sorted(self.loras), "slots": sorted(slots)}]

    async def pause_generation(self, *, mode="abort", clear_cache=True):
        self.paused = mode

    async def resume_generation(self):
        self.paused = False

    async def is_paused(self):
        return bool(self.paused)

    @property
    def vllm_config(self):
        """A real VllmConfig (what /server_info dumps), without a model."""
        from vllm.config import LoRAConfig, VllmConfig

        config = VllmConfig()
        config.lora_config = LoRAConfig(max_lora_rank=16, max_loras=3)
        return config

    async def remove_lora(self, lora_id):
        self.loras.discard(lora_id)
        self.pinned = self.pinned - {lora_id}
        return True
