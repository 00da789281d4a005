"""The plugin's changes to vLLM's CPU platform: our punica wrapper, and compilation kept with LoRA."""

from __future__ import annotations

import os

import pytest
from vllm.config import CompilationMode
from vllm.engine.arg_utils import EngineArgs
from vllm.lora.punica_wrapper.punica_selector import get_punica_wrapper
from vllm.platforms import current_platform

from server.in_engine.lora_ops import install
from server.in_engine.lora_ops.punica import GroupedPunicaWrapperCPU
from server.vllm_patches import theirs


@pytest.fixture
def platform_class():
    """The CPU platform class, with what install() patches restored afterwards (and the
    environment variables vLLM's config check sets for its workers)."""
    cls = type(current_platform)
    saved = {k: cls.__dict__[k] for k in ("get_punica_wrapper", "check_and_update_config",
                                          "_adapter_serve_compiles_lora") if k in cls.__dict__}
    # vLLM's own to start from, should this process have installed ours already (prepare_engine).
    for k in ("get_punica_wrapper", "check_and_update_config"):
        setattr(cls, k, classmethod(theirs(cls, k)))
    if "_adapter_serve_compiles_lora" in cls.__dict__:
        delattr(cls, "_adapter_serve_compiles_lora")
    env = dict(os.environ)
    yield cls
    for k in ("get_punica_wrapper", "check_and_update_config", "_adapter_serve_compiles_lora"):
        if k in saved:
            setattr(cls, k, saved[k])
        elif k in cls.__dict__:
            delattr(cls, k)
    os.environ.clear()
    os.environ.update(env)


def compilation_mode(model: str, **kwargs) -> CompilationMode:
    args = EngineArgs(model=model, dtype="float32", kv_cache_memory_bytes=2**26, **kwargs)
    return args.create_engine_config().compilation_config.mode


def test_points_cpu_platform_at_grouped_wrapper(platform_class):
    assert install.install() == current_platform.is_cpu()  # other platforms keep their kernels
    if current_platform.is_cpu():
        assert isinstance(get_punica_wrapper(64, 4, "cpu"), GroupedPunicaWrapperCPU)


def test_lora_keeps_the_model_compiled(platform_class, tiny):
    model = str(tiny["base"])
    stock = compilation_mode(model, enable_lora=True)
    compiled = compilation_mode(model)
    if not install.install():  # not CPU: nothing changes
        assert compilation_mode(model, enable_lora=True) == stock
        return
    # Stock vLLM runs every LoRA-enabled model eagerly on CPU; with the plugin it stays compiled.
    assert stock == CompilationMode.NONE
    assert compiled == CompilationMode.DYNAMO_TRACE_ONCE
    assert compilation_mode(model, enable_lora=True) == compiled
    assert compilation_mode(model, enable_lora=True, enforce_eager=True) == CompilationMode.NONE


def test_prompts_are_scored_only_with_our_ops_on_cpu(monkeypatch):
    from vllm.platforms import current_platform

    from server.in_engine.lora_ops.install import scores_prompts

    assert current_platform.is_cpu()  # the suite's engine
    assert scores_prompts(True) and not scores_prompts(False)
    monkeypatch.setattr(type(current_platform), "is_cpu", lambda self: False)
    assert not scores_prompts(True)  # vLLM's GPU kernels drop an lm_head adapter (vLLM #51594)
