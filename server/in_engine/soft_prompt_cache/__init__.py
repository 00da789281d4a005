"""Compute a soft prompt's virtual tokens once, then reuse their KV for every later request.

A soft prompt sits at positions 0..V-1 of every request that uses it and, attention being causal,
its keys and values there depend only on the soft prompt's rows and the weights (base model +
LoRA): the same for all those requests. vLLM's prefix cache would reuse them if they filled whole
KV blocks, but on CPU blocks are at least 32 tokens (128 by default), so a 16- or 20-token soft
prompt shares its block with the request's own text and every request prefilled it again.

This package plugs into vLLM as a KV connector (its interface for external KV caches), which may
hand the scheduler any number of precomputed tokens, not just whole blocks:

- `plan` (engine-core process, next to the scheduler): keys each request by its soft prompt and
  LoRA; the first request of a key saves its first blocks after its prefill step, later requests
  of that key start with the virtual tokens already computed and load them. LRU within a budget.
- `blocks` (worker process): copies those KV blocks out of and into the paged cache.
- `connector`: the vLLM-facing class that routes each call to one of the two.

Results are unchanged: the loaded KV is what the request would have computed itself (the e2e PEFT
oracle runs through it), and `usage.prompt_tokens_details.cached_tokens` shows the reuse.
"""

from __future__ import annotations

from vllm.config import KVTransferConfig

CONNECTOR = "SoftPromptKVConnector"


def kv_transfer_config(budget_mib: float) -> KVTransferConfig:
    return KVTransferConfig(
        kv_connector=CONNECTOR,
        kv_connector_module_path="server.in_engine.soft_prompt_cache.connector",
        kv_role="kv_both",
        kv_connector_extra_config={"budget_mib": budget_mib},
    )
