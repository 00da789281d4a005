"""Switch vLLM's CPU platform to the grouped LoRA ops (called from `server.in_engine.plugin`).

Acts only when the current platform is CPU: CUDA and other accelerators keep their own punica
kernels. Two changes to the CPU platform class, and one to the model runner (3.):

1. The punica wrapper: vLLM picks it by qualified name from the platform, so pointing the CPU
   platform at our subclass is the whole change.
2. Compilation: the CPU platform turns it off whenever LoRA is enabled, so every LoRA server
   ran eagerly and even base-model requests paid for it (~0.7x of a LoRA-less server's
   throughput). Our wrapper's linear LoRA is one opaque op (`server.in_engine.lora_ops.op`), which a
   compiled model can call, so the compilation mode chosen without LoRA is kept. Sharded LoRA
   (tensor parallel) still goes through vLLM's Python ops and stays eager.
3. Prompt log-probabilities: the model runner's `_get_prompt_logprobs_dict` is wrapped so that
   our wrapper's lm_head LoRA applies each scored prompt token's own adapter (vLLM's crashes).
4. Adapter swaps: the LoRA model manager's `activate_adapter` is wrapped to log the slot it
   writes, so that our ops re-derive that slot's copies only (`slot_writes`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from server.vllm_patches import PATCH_MARK, mark

if TYPE_CHECKING:
    from vllm.config import VllmConfig
    from vllm.platforms.cpu import CpuPlatform

ENABLE_ENV = "ADAPTER_SERVE_FAST_LORA_OPS"
"""Set to 1 by server.engine when ServerConfig.fast_lora_ops is on."""

WRAPPER = "server.in_engine.lora_ops.punica.GroupedPunicaWrapperCPU"


def enabled() -> bool:
    return os.environ.get(ENABLE_ENV) == "1"


def scores_prompts(fast_lora_ops: bool) -> bool:
    """Whether prompt log-probabilities (echo + logprobs) are right with LoRA enabled: only with
    our ops on CPU (3. above); vLLM's crash on CPU and drop an lm_head adapter on GPU."""
    from vllm.platforms import current_platform

    return fast_lora_ops and current_platform.is_cpu()


def install() -> bool:
    """Patch the CPU platform's punica wrapper and compilation rule; returns whether it did."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return False
    cls: type[CpuPlatform] = type(current_platform)
    original = cls.get_punica_wrapper.__func__
    if not getattr(original, PATCH_MARK, None):

        def get_punica_wrapper(platform_cls) -> str:
            return WRAPPER

        cls.get_punica_wrapper = classmethod(mark("cpu-punica-wrapper", get_punica_wrapper, original))
    _keep_compilation_with_lora(cls)
    _score_prompts_per_token()
    _log_slot_writes()
    return True


def _log_slot_writes() -> None:
    """Adapter swaps patch our derived weights per slot: see `server.in_engine.lora_ops.slot_writes`."""
    from vllm.lora.model_manager import LoRAModelManager

    from server.in_engine.lora_ops.slot_writes import logging_activations

    LoRAModelManager.activate_adapter = logging_activations(LoRAModelManager.activate_adapter)


def _score_prompts_per_token() -> None:
    """Prompt log-probabilities with LoRA: see `server.in_engine.lora_ops.punica`."""
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner

    from server.in_engine.lora_ops.punica import scoring_prompts

    original = GPUModelRunner._get_prompt_logprobs_dict
    if not getattr(original, PATCH_MARK, None):
        GPUModelRunner._get_prompt_logprobs_dict = scoring_prompts(original)


def _keep_compilation_with_lora(cls: type[CpuPlatform]) -> None:
    if getattr(cls, "_adapter_serve_compiles_lora", False):
        return
    original = cls.check_and_update_config.__func__

    def check_and_update_config(platform_cls, vllm_config: VllmConfig) -> None:
        lora = vllm_config.lora_config
        if lora is None or lora.fully_sharded_loras:
            return original(platform_cls, vllm_config)
        # What the platform picks for this config without LoRA is what we want with it.
        vllm_config.lora_config = None
        try:
            original(platform_cls, vllm_config)
        finally:
            vllm_config.lora_config = lora

    cls.check_and_update_config = classmethod(mark("cpu-compile-with-lora", check_and_update_config, original))
    cls._adapter_serve_compiles_lora = True
