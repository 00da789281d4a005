"""Inspect the model's class in this process on CPU, instead of in a fresh interpreter.

vLLM reads what a model class supports (`_ModelInfo`: multimodal, pooling, LoRA, ...) by
importing it in a subprocess, "to avoid initializing CUDA" in the API process, then caches the
answer in VLLM_CACHE_ROOT/modelinfos. With that cache empty (a new machine, a new container,
a new vLLM), the subprocess imports torch and vLLM from scratch: 18-23 s of a 2-core machine's
cold start, with the API process waiting. On CPU there is no CUDA to keep uninitialised, and
this process has torch and vLLM imported already: importing the model's module here costs a
fraction of a second. The answer is cached by vLLM as before.
"""

from __future__ import annotations


def install() -> bool:
    """On CPU, run vLLM's model-class inspection in this process; returns whether it did."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return False
    from vllm.model_executor.models import registry

    from server.vllm_patches import PATCH_MARK, mark

    original = registry._run_in_subprocess
    if not getattr(original, PATCH_MARK, None):

        def run_here(fn):
            return fn()

        registry._run_in_subprocess = mark("model-info-in-process", run_here, original)
    return True
