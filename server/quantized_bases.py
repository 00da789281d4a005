"""Int8 (W8A8) quantized bases on CPU, with LoRA (called from `server.vllm_plugin`).

1. LoRA on them starts. vLLM's CPU int8 kernel (compressed-tensors W8A8 on CPUs without AMX: the
   oneDNN path) prepacks each layer's weight into a oneDNN handle and sets the layer's `weight`
   to None. vLLM's LoRA layers look for their device with `base_layer.weight.device` (the
   attribute exists, so it is taken) and the engine fails at start-up ("'NoneType' object has no
   attribute 'device'"). The device of such a layer is that of its other parameters (the scales);
   every other layer keeps vLLM's answer. Nothing else in vLLM's LoRA path reads a linear
   layer's weight, and the base output still comes from the layer's own int8 kernel.
2. A warning where the int8 arithmetic is inexact. On x86 CPUs without VNNI (AVX2 only), oneDNN
   multiplies int8 pairs with `vpmaddubsw`, whose 16-bit pair sums saturate: on a 256-wide
   layer the error was ~13x the quantization's own (checked against exact integer products).
   The model serves, but its outputs drift further from the unquantized model's than W8A8 should.
"""

from __future__ import annotations

import itertools
import logging

import torch

log = logging.getLogger(__name__)


def install() -> None:
    _lora_device_of_prepacked_layers()
    _warn_without_vnni()


def _lora_device_of_prepacked_layers() -> None:
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
    # base_linear imported the function by name, so its module-level name is patched too.
    utils._get_lora_device = base_linear._get_lora_device = lora_device


def _warn_without_vnni() -> None:
    from vllm.model_executor.kernels.linear.scaled_mm.cpu import CPUInt8ScaledMMLinearKernel

    original = CPUInt8ScaledMMLinearKernel.process_weights_for_onednn
    if getattr(original, "_adapter_serve", False):
        return
    warned = []

    def process_weights_for_onednn(self, layer: torch.nn.Module) -> None:
        if not warned and not torch.cpu._is_vnni_supported():
            warned.append(True)
            log.warning("int8 layers on a CPU without VNNI: oneDNN's int8 matmul saturates 16-bit "
                        "sums here, so outputs carry more error than W8A8 quantization alone; "
                        "serve W8A8 models on CPUs with AVX512-VNNI, AVX-VNNI or AMX, or on GPUs")
        original(self, layer)

    process_weights_for_onednn._adapter_serve = True
    CPUInt8ScaledMMLinearKernel.process_weights_for_onednn = process_weights_for_onednn
