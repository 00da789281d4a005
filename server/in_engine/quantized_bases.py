"""Int8 (W8A8) quantized bases on CPU, with LoRA.

1. LoRA on them starts. vLLM's CPU int8 kernel (compressed-tensors W8A8 on CPUs without AMX: the
   oneDNN path) prepacks each layer's weight into a oneDNN handle and sets the layer's `weight`
   to None. vLLM's LoRA layers look for their device with `base_layer.weight.device` (the
   attribute exists, so it is taken) and the engine fails at start-up ("'NoneType' object has no
   attribute 'device'"). The device of such a layer is that of its other parameters (the scales);
   every other layer keeps vLLM's answer. Nothing else in vLLM's LoRA path reads a linear
   layer's weight, and the base output still comes from the layer's own int8 kernel.
   (`install`, called from `server.in_engine.plugin` in the engine's processes.)
2. A warning where the int8 arithmetic is inexact. On x86 CPUs without VNNI (AVX2 only), oneDNN
   multiplies int8 pairs with `vpmaddubsw`, whose 16-bit pair sums saturate: on a 256-wide
   layer the error was ~13x the quantization's own (checked against exact integer products).
   The model serves, but its outputs drift further from the unquantized model's than W8A8 should.
   (`warn_if_inexact`, called by `server.engine` from the model's config, before the engine
   starts: checking it inside the engine would import vLLM's quantized-kernel modules into
   every engine's start.)
"""

from __future__ import annotations

import itertools
import logging
import platform

import torch

from server.vllm_patches import mark

log = logging.getLogger(__name__)


def install() -> None:
    """LoRA device of layers whose weight a kernel prepacked (item 1)."""
    from vllm.lora.layers import base_linear, utils

    original = utils._get_lora_device
    if getattr(original, "_adapter_serve", False):
        return

    def lora_device(base_layer: torch.nn.Module) -> torch.device:
        if hasattr(base_layer, "weight") and base_layer.weight is None:
            for tensor in itertools.chain(base_layer.parameters(), base_layer.buffers()):
                return tensor.device
            return torch.device("cpu")
        return original(base_layer)

    lora_device._adapter_serve = True
    mark("lora-device-prepacked", lora_device, original)
    # base_linear imported the function by name, so its module-level name is patched too.
    utils._get_lora_device = base_linear._get_lora_device = lora_device


def warn_if_inexact(quantization_config: dict | None) -> bool:
    """Log a warning (and return True) when a model with int8 activations (compressed-tensors
    W8A8) is about to run on an x86 CPU without VNNI (item 2)."""
    groups = (quantization_config or {}).get("config_groups") or {}
    int8_activations = any((group.get("input_activations") or {}).get("type") == "int"
                           and (group.get("input_activations") or {}).get("num_bits") == 8
                           for group in groups.values())
    # Only x86 multiplies int8 with vpmaddubsw; VNNI's instructions sum in 32 bits.
    if not int8_activations or platform.machine().lower() not in ("x86_64", "amd64") \
            or torch.cpu._is_vnni_supported():
        return False
    log.warning("int8 layers on a CPU without VNNI: oneDNN's int8 matmul saturates 16-bit sums here, "
                "so outputs carry more error than W8A8 quantization alone; serve W8A8 models on CPUs "
                "with AVX512-VNNI, AVX-VNNI or AMX, or on GPUs")
    return True
