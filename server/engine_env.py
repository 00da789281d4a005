"""What the server puts in the environment of its engine's processes, before they start.

oneDNN's primitive cache. On CPU, torch runs bf16 (and other oneDNN-backed) matmuls through
oneDNN, which compiles a primitive for each new shape and keeps it in a cache of 1024 by default.
vLLM meets a new shape at almost every step: the number of tokens in a batch (decode batch sizes,
prefill lengths) is a matmul dimension. Under sustained load the engine's memory grew with every
primitive added, ~100 KiB each: +115 MiB a minute on the bench model, in stock vLLM's worker as
in ours (loadtests.soak, RESULTS.md "Memory under sustained load"), for the tens of minutes a
1024-entry cache takes to fill. A cache of 128 keeps the decode shapes and the common prefill
shapes; the soak's throughput was unchanged and its memory flat. oneDNN reads the variable when it
creates its first primitive, in the engine's processes: they inherit it (the prestarted engine
core too, spawned after this is set).
"""

from __future__ import annotations

import os

from server.config import ServerConfig

ONEDNN_CACHE_ENV = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"


def apply(config: ServerConfig) -> None:
    if config.onednn_primitive_cache >= 0:
        os.environ[ONEDNN_CACHE_ENV] = str(config.onednn_primitive_cache)
