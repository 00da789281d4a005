"""The grouped LoRA linear as one opaque torch op, so a LoRA-enabled model can stay compiled.

vLLM's CPU platform runs the model eagerly whenever LoRA is enabled: its CPU LoRA ops are
Python over per-step state (which tokens use which adapter) that a single dynamo trace would
bake in as constants. Behind a custom op, dynamo and inductor see one node that mutates `y`,
and the per-step grouping is read when the op runs, from the punica wrapper that owns it.
vLLM does the same for its CUDA LoRA kernels (`torch.ops.vllm.lora_shrink` / `lora_expand`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.library import Library
from vllm.utils.torch_utils import direct_register_custom_op

_lib = Library("adapter_serve", "FRAGMENT")  # the op lives as long as this object
_wrapper: Any = None


def bind(wrapper: Any) -> None:
    """Make `wrapper` (the process's GroupedPunicaWrapperCPU) the one the op reads from.

    A worker process has one model runner, hence one LoRA manager and one wrapper."""
    global _wrapper
    _wrapper = wrapper


def _lora_linear(y: torch.Tensor, x: torch.Tensor, lora_a: list[torch.Tensor],
                 lora_b: list[torch.Tensor], scale: float, output_slices: list[int]) -> None:
    _wrapper.lora_linear_now(y, x, tuple(lora_a), tuple(lora_b), scale, tuple(output_slices))


def _lora_linear_fake(y: torch.Tensor, x: torch.Tensor, lora_a: list[torch.Tensor],
                      lora_b: list[torch.Tensor], scale: float, output_slices: list[int]) -> None:
    return None


direct_register_custom_op("lora_linear", _lora_linear, mutates_args=["y"],
                          fake_impl=_lora_linear_fake, target_lib=_lib, dispatch_key="CPU")

lora_linear = torch.ops.adapter_serve.lora_linear
