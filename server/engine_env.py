"""What the server puts in the environment of its engine's processes, before they start.

oneDNN's primitive caches. On CPU, torch runs bf16 (and other oneDNN-backed) matmuls through
oneDNN, which compiles a primitive for each new shape, and two caches keep them, 1024 entries each
by default: oneDNN's own (ONEDNN_PRIMITIVE_CACHE_CAPACITY) and torch's ideep layer above it
(LRU_CACHE_CAPACITY), whose entries also hold their buffers (~1 MiB each for the bench model's
layers). vLLM meets a new shape at almost every step: the number of tokens in a batch (decode
batch sizes, prefill lengths) is a matmul dimension. Under sustained load the engine's memory grew
with every shape met, +115 MiB a minute at first on the bench model, in stock vLLM's worker as in
ours, for the hours two 1024-entry caches take to fill (loadtests.soak, RESULTS.md "Memory under
sustained load"). Bounding oneDNN's cache alone slowed that to ~8 MiB a minute, the ideep cache
filling behind it; bounding both keeps memory flat. Both read their variable when they create
their first entry, in the engine's processes: they inherit it (the prestarted engine core too,
spawned after this is set).
"""

from __future__ import annotations

import os

from server.config import ServerConfig

ONEDNN_CACHE_ENV = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"
IDEEP_CACHE_ENV = "LRU_CACHE_CAPACITY"  # torch's ideep (third_party/ideep, utils/lru_cache.hpp)


def apply(config: ServerConfig) -> None:
    if config.onednn_primitive_cache >= 0:
        for name in (ONEDNN_CACHE_ENV, IDEEP_CACHE_ENV):
            os.environ[name] = str(config.onednn_primitive_cache)
