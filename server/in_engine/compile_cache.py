"""Load vLLM's AOT compile cache on CPU instead of compiling the model again on every start.

vLLM saves the compiled model under ~/.cache/vllm/torch_compile_cache/torch_aot_compile/HASH
(keyed by the model, the engine config and vLLM's source) and loads it on the next start. On
CPU (vLLM 0.32) the load always fails and the model is compiled again, 20-40 s on a 2-core
machine: "Compiling model again due to a load failure ... 'function' object has no attribute
'finalize_loading'". The loader finalizes the artifact through
`compiled_fn.finalize_loading(vllm_config)`, a method of vLLM's own serializable backend (the
piecewise graphs GPUs use); CPU compiles with plain Inductor (DYNAMO_TRACE_ONCE), whose
deserialized callable, torch's `BundledAOTAutogradSerializableCallable`, is complete once
deserialized and has no such method. Giving it a no-op one lets the load succeed; vLLM still
checks the source files and the config hash before using the artifact.
"""

from __future__ import annotations


def install() -> bool:
    """Add the missing no-op; returns whether it was needed (False on torch builds that have it)."""
    try:
        from torch._dynamo.aot_compile_types import BundledAOTAutogradSerializableCallable
    except ImportError:
        return False
    if "finalize_loading" in vars(BundledAOTAutogradSerializableCallable):
        return False
    from server.vllm_patches import mark

    def finalize_loading(self, vllm_config) -> None:
        return None

    # Looked up on the class first, so the wrapped function's __getattr__ delegation never sees it.
    BundledAOTAutogradSerializableCallable.finalize_loading = mark("compile-cache-on-cpu", finalize_loading)
    return True
