"""QLoRA: LoRA trained on a base quantized to 4-bit NF4 (bitsandbytes; works on CPU).

    python -m training qlora --config training/recipes/qlora-alpaca.yaml

Only the training copy of the base is quantized (memory); the adapter is an ordinary LoRA
adapter and the server applies it to the unquantized base, as the QLoRA paper does at inference.
As in the QLoRA recipe, each process loads its quantized copy straight onto its own device
(device_map; a 4-bit model cannot be moved after loading) and gradient checkpointing is on by
default (train.gradient_checkpointing). Several processes (torchrun) train it data-parallel, on
GPUs or, with bitsandbytes >= 0.45's CPU kernels, on CPUs over gloo.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from peft import get_peft_model, prepare_model_for_kbit_training
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

from training.recipe import Recipe
from training.devices import device, training_dtype
from training.methods.common import Method
from training.methods.lora import LoraOptions, lora_config, refuse_lora


@dataclass
class QuantizationOptions:
    """How the base is quantized for training."""

    quant_type: Literal["nf4", "fp4"] = "nf4"
    """4-bit data type: nf4 (NormalFloat, QLoRA's) or fp4."""
    double_quant: bool = True
    """Quantize the quantization constants too (saves ~0.4 bits per weight)."""
    compute_dtype: Literal["bfloat16", "float32"] = "bfloat16"
    """Dtype of the matmuls on dequantized weights."""


def load_quantized(recipe: Recipe):
    q = recipe.quantization
    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=q.quant_type,
                                bnb_4bit_use_double_quant=q.double_quant,
                                bnb_4bit_compute_dtype=getattr(torch, q.compute_dtype))
    return AutoModelForCausalLM.from_pretrained(recipe.model.base, quantization_config=config,
                                                dtype=training_dtype(recipe), device_map={"": str(device())})


def prepare_qlora(model, recipe: Recipe, tokenizer):
    # Freezes the base and casts its unquantized weights (norms, embeddings, lm_head) to float32;
    # gradient checkpointing, if on, was enabled by the shared loader (training.methods.common).
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return get_peft_model(model, lora_config(recipe.lora))


METHOD = Method(
    name="qlora",
    help="LoRA on a 4-bit NF4 quantized base (bitsandbytes)",
    produces="adapter",
    options={"lora": LoraOptions, "quantization": QuantizationOptions},
    load_model=load_quantized,
    prepare=prepare_qlora,
    refuse=refuse_lora,
)
