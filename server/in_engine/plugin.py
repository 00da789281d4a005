"""Changes this server makes inside every vLLM process (engine core and workers).

Registered as a `vllm.general_plugins` entry point, which vLLM loads in each process it starts.
It acts only when the parent is this server (the environment flag below is set by
`server.engine`), so stock vLLM run from the same environment (the benchmarks) stays stock.

1. No LoRA wrapper on the input embedding. The server admits LoRA on linear layers only, so the
   wrapper adds nothing, yet it costs a gather per step and, worse, crashes the engine when a
   batch mixes soft-prompt embedding positions with token ids while a LoRA is active: vLLM embeds
   only the token-id positions but the wrapper indexes its LoRA mapping by all of them
   (einsum "subscript b has size N ... does not broadcast").
2. On CPU, LoRA through the grouped ops of `server.in_engine.lora_ops` (unless the server runs with
   --no-fast-lora-ops, which `server.engine` passes on as a second environment flag).
3. JSON grammars: bounded whitespace (--json-max-whitespace) and length-bounded strings without
   raw control characters (`server.in_engine.grammars.json_schema`).
4. Engine processes kill themselves once the server process is gone (`server.in_engine.lifeline`).
5. Int8-quantized bases on CPU: LoRA on them, which vLLM's path cannot start
   (`server.in_engine.quantized_bases`).
6. Start-up: phases timed into the server's start-up trace (`server.in_engine.engine_phases`), and
   the compile cache loadable on CPU (`server.in_engine.compile_cache`).
7. This server's loggers write where vLLM's do, so what its engine-side code logs at INFO (which
   code path the LoRA kernel runs) reaches the server's log beside vLLM's own lines.
"""

from __future__ import annotations

import os
import time

ENABLE_ENV = "ADAPTER_SERVE_VLLM_PLUGIN"


def register() -> None:
    if os.environ.get(ENABLE_ENV) != "1":
        return
    started = time.time()
    _share_vllm_logging()
    from server.in_engine import lifeline

    lifeline.watch()
    _no_lora_on_embeddings()

    from server.in_engine.lora_ops import install as lora_ops

    if lora_ops.enabled():
        lora_ops.install()  # no-op unless the platform is CPU

    from server.in_engine.grammars import json_schema

    json_schema.install()

    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        from server.in_engine import quantized_bases

        quantized_bases.install()

    from server.in_engine import compile_cache, engine_phases

    compile_cache.install()
    engine_phases.install(started)  # last: it times the plugin's work above


def _no_lora_on_embeddings() -> None:
    """vLLM never wraps the input embedding in its LoRA layer (item 1)."""
    from vllm.lora.layers.vocab_parallel_embedding import VocabParallelEmbeddingWithLoRA

    from server.vllm_patches import PATCH_MARK, mark

    cls = VocabParallelEmbeddingWithLoRA
    original = cls.can_replace_layer.__func__
    if getattr(original, PATCH_MARK, None):
        return

    def can_replace_layer(cls, *args, **kwargs) -> bool:
        return False

    cls.can_replace_layer = classmethod(mark("no-lora-on-embeddings", can_replace_layer, original))


def _share_vllm_logging() -> None:
    """Give the `server` loggers of this engine process vLLM's handlers and level (item 7)."""
    import logging

    ours, theirs = logging.getLogger("server"), logging.getLogger("vllm")
    if ours.handlers or not theirs.handlers:
        return
    for handler in theirs.handlers:
        ours.addHandler(handler)
    ours.setLevel(theirs.getEffectiveLevel())
    ours.propagate = False
