"""Where the worker holds each LoRA: in one of its adapter slots (what a batch can use at once) or
only in its host-memory cache (one step away from a slot), for `vllm:lora_adapter_loaded`.

vLLM keeps both levels in the worker (its LRU cache manager: `list_adapters()` is the cache,
`lora_index_to_id` the slots) and tells the engine's clients only the first (`list_loras`). This
class is mixed into vLLM's worker class by name (vLLM's own `worker_extension_cls`, set by
`server.engine`) and called through the public `AsyncLLM.collective_rpc(METHOD)`, between steps.
"""

from __future__ import annotations

METHOD = "adapter_serve_lora_residency"
EXTENSION = f"{__name__}.LoraResidency"


class LoraResidency:
    def adapter_serve_lora_residency(self) -> dict[str, list[int]]:
        """The engine LoRA ids in the host cache and those in a slot (a subset of the cache)."""
        manager = self.model_runner.lora_manager  # vLLM's LRUCacheWorkerLoRAManager
        slots = manager._adapter_manager.lora_index_to_id
        return {"cache": sorted(manager.list_adapters()),
                "slots": sorted(lora_id for lora_id in slots if lora_id is not None)}
