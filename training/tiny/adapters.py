"""Random but visibly effective PEFT adapters (LoRA and prompt tuning) for a local base model.

A freshly created PEFT adapter is a no-op (LoRA's B starts at zero), and PEFT's random prompt
init is N(0, 1), far larger than the token embeddings. Here both are re-drawn from a seeded
generator at scales relative to the base weights, so an adapter changes greedy output without
wrecking it, and the same seed always gives the same files. Tensors are stored in the base
model's dtype, so a server sees one dtype per model.

Usage:
    from training.tiny.adapters import build_lora_adapter, build_prompt_tuning_adapter
    build_lora_adapter("/tmp/tiny-llama", "/tmp/lora-a", rank=8, seed=1)
    build_prompt_tuning_adapter("/tmp/tiny-llama", "/tmp/soft-prompt", num_virtual_tokens=8, seed=2)
    # or: python -m training.tiny lora --base /tmp/tiny-llama --out /tmp/lora-a --seed 1
    # each out dir holds adapter_config.json + adapter_model.safetensors
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from peft import LoraConfig, PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model
from peft.tuners.lora import LoraLayer
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def servable_lora_config(rank: int, alpha: float, target_modules: Sequence[str]) -> LoraConfig:
    """A LoRA the server can load: linear targets only, no dropout, no bias, no DoRA."""
    return LoraConfig(task_type=TaskType.CAUSAL_LM, r=rank, lora_alpha=alpha,
                      target_modules=list(target_modules), lora_dropout=0.0, bias="none")


def load_base(base_dir: str | Path) -> PreTrainedModel:
    """The base model in its saved dtype (transformers 5 would otherwise pick for us)."""
    return AutoModelForCausalLM.from_pretrained(str(base_dir), dtype="auto").eval()


@torch.no_grad()
def init_lora_weights(model: torch.nn.Module, init_scale: float, seed: int, adapter_name: str = "default") -> None:
    """Draw lora_A and lora_B so that std(ΔW) ≈ init_scale * std(W) in every adapted layer.

    ΔW = (alpha / r) * B @ A with B: [out, r], A: [r, in]. If all entries of A and B are
    N(0, s²), an entry of ΔW has std (alpha / r) * sqrt(r) * s², which gives s below.
    """
    generator = torch.Generator().manual_seed(seed)
    for _, module in model.named_modules():  # definition order: fixed for a given base
        if not isinstance(module, LoraLayer) or adapter_name not in module.lora_A:
            continue
        a, b = module.lora_A[adapter_name].weight, module.lora_B[adapter_name].weight  # [r, in], [out, r]
        rank = a.shape[0]
        target_std = init_scale * module.get_base_layer().weight.float().std().item()
        s = math.sqrt(target_std / (module.scaling[adapter_name] * math.sqrt(rank)))
        # Drawn in float32 whatever the dtype, so a bf16 adapter is the rounded float32 one.
        a.copy_(torch.randn(a.shape, generator=generator) * s)
        b.copy_(torch.randn(b.shape, generator=generator) * s)


def build_lora_adapter(
    base_dir: str | Path,
    out_dir: str | Path,
    *,
    rank: int = 8,
    alpha: int = 16,
    target_modules: Sequence[str] = ALL_LINEAR,
    seed: int = 0,
    init_scale: float = 0.2,
) -> Path:
    """Save a random LoRA adapter for the model in `base_dir` into `out_dir`; return `out_dir`.

    `init_scale` is std(ΔW) / std(W) per adapted matrix: 0.2 changes greedy continuations within
    a token or two and keeps them as varied as the base model's (see tests). vLLM accepts ranks
    1, 8, 16, 32, 64, ... up to its --max-lora-rank; no `modules_to_save`, no DoRA (it rejects them).
    """
    config = servable_lora_config(rank, alpha, target_modules)
    # autocast_adapter_dtype=False keeps LoRA weights in the base dtype (PEFT upcasts bf16 to fp32 by default).
    model = get_peft_model(load_base(base_dir), config, autocast_adapter_dtype=False)
    init_lora_weights(model, init_scale, seed)
    # PEFT turns target_modules into a set, whose JSON order follows PYTHONHASHSEED; a sorted
    # list makes adapter_config.json identical across runs.
    model.peft_config["default"].target_modules = sorted(model.peft_config["default"].target_modules)
    out = Path(out_dir)
    model.save_pretrained(str(out), safe_serialization=True)
    return out


def build_prompt_tuning_adapter(
    base_dir: str | Path,
    out_dir: str | Path,
    *,
    num_virtual_tokens: int = 8,
    seed: int = 0,
    init_text: str | None = None,
) -> Path:
    """Save a prompt-tuning adapter (one tensor, `prompt_embeddings` [num_virtual_tokens, hidden]).

    Random rows are N(0, std(embed_tokens)²), i.e. sized like real token embeddings; with
    `init_text` the rows are the embeddings of the text's tokens (repeated or cut to length).
    """
    base = load_base(base_dir)
    embed = base.get_input_embeddings().weight  # [vocab, hidden]
    # The config always says RANDOM: PEFT's own TEXT init would tokenize with <s> first and would
    # record base_dir as a tokenizer path, which must then exist wherever the adapter is loaded.
    config = PromptTuningConfig(
        task_type=TaskType.CAUSAL_LM,
        num_virtual_tokens=num_virtual_tokens,
        prompt_tuning_init=PromptTuningInit.RANDOM,
    )
    model = get_peft_model(base, config, autocast_adapter_dtype=False)
    with torch.no_grad():
        if init_text is None:
            generator = torch.Generator().manual_seed(seed)
            rows = torch.randn((num_virtual_tokens, embed.shape[1]), generator=generator) * embed.float().std()
        else:
            tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
            ids = tokenizer(init_text, add_special_tokens=False).input_ids
            if not ids:
                raise ValueError("init_text must not be empty")
            ids = (ids * math.ceil(num_virtual_tokens / len(ids)))[:num_virtual_tokens]
            rows = embed[ids].float()
        prompt = model.prompt_encoder["default"].embedding
        # Replace the Parameter, not just its values: PEFT creates it in float32 whatever the base dtype.
        prompt.weight = torch.nn.Parameter(rows.to(embed.dtype))
    out = Path(out_dir)
    model.save_pretrained(str(out), safe_serialization=True)
    return out
