"""Quantize a base model into a checkpoint vLLM serves quantized, with the same adapters on top.

    python -m training quantize --model .demo/base --out .demo/base-w8a8 --scheme W8A8
    python -m server --model .demo/base-w8a8 --adapters adapters   # the adapters of .demo/base

The output is a compressed-tensors checkpoint (the format of LLM Compressor and of the
"quantized.w8a8" / "quantized.w4a16" models on the hub), which vLLM and transformers load without
flags. Weights are rounded to the nearest level of a min-max scale (per output channel, or per
group of input columns for W4A16): what LLM Compressor's `QuantizationModifier` does for these
schemes, without its calibration pass, which weight-only scales and dynamic activation scales do not
need. Better 4-bit accuracy (GPTQ, AWQ) needs LLM Compressor itself; its checkpoints serve the same.

Schemes, and where vLLM 0.32 runs them:
- `W8A8`: int8 weights (per channel), int8 activations quantized per token at run time. Every
  x86 CPU (oneDNN), CUDA GPUs. Without VNNI (AVX2-only CPUs) oneDNN's int8 sums saturate and the
  error grows well beyond the quantization's own (the server warns; README: Scaling out).
- `W4A16`: 4-bit weights in groups of `--group-size` columns, activations in the model's dtype.
  CPUs with AVX-512 (vLLM's CPU build has no AVX2 kernel for it) or AMX, CUDA GPUs.

`lm_head` stays unquantized (as in LLM Compressor's recipes); so do embeddings and norms.

Adapters trained on the unquantized model serve on the quantized one: `quantization.json` in the
output names the source model's identity, and the server accepts manifests naming either. A LoRA
then adds its update to the quantized layer's output, as PEFT does on a quantized base, so outputs
differ from the unquantized model's by the quantization error (the README states how much).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

SCHEMES = ("W8A8", "W4A16")


@dataclass
class QuantizeConfig:
    """Quantize a base model into a compressed-tensors checkpoint that serves its adapters."""

    model: str = ""
    """The base model directory (Hugging Face format, safetensors)."""
    out: str = ""
    """Directory for the quantized model (must not exist, or be empty)."""
    scheme: str = "W8A8"
    """W8A8 (int8 weights and per-token int8 activations; any x86 CPU, GPUs) or W4A16 (4-bit
    weights; CPUs with AVX-512, GPUs)."""
    group_size: int = 128
    """W4A16 only: input columns that share one scale (must divide every layer's input size)."""


def quantize_model(model_dir: str | Path, out_dir: str | Path, scheme: str = "W8A8",
                   group_size: int = 128) -> Path:
    """Write `model_dir` quantized with `scheme` into `out_dir`; returns `out_dir`."""
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import (
        QuantizationConfig, apply_quantization_config, preset_name_to_scheme)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from adapter_formats.manifest import QUANTIZATION_LINEAGE_FILE, base_model_identity

    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ValueError(f"{out_dir} exists and is not empty")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="auto")
    preset = preset_name_to_scheme(scheme, ["Linear"])
    if preset.weights.group_size is not None:
        preset.weights.group_size = group_size
    apply_quantization_config(model, QuantizationConfig(config_groups={"group_0": preset},
                                                        ignore=["lm_head"]))
    for name, module in model.named_modules():
        if getattr(module, "quantization_scheme", None) is not None:
            _set_weight_qparams(name, module)
    compressor = ModelCompressor.from_pretrained_model(model)
    compressor.compress_model(model)
    model.save_pretrained(out_dir)
    compressor.update_config(out_dir)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out_dir)  # with its chat template
    lineage = {"scheme": scheme, "group_size": preset.weights.group_size,
               "method": "round to nearest, min-max scales (compressed-tensors)",
               "quantized_from": {"identity": base_model_identity(model_dir), "path": str(model_dir.resolve())}}
    (out_dir / QUANTIZATION_LINEAGE_FILE).write_text(json.dumps(lineage, indent=2) + "\n")
    return out_dir


def _set_weight_qparams(name: str, module: torch.nn.Module) -> None:
    """Min-max scale (and zero point) of the weight: per output channel, or per group of columns."""
    from compressed_tensors.quantization.utils import calculate_qparams

    args = module.quantization_scheme.weights
    weight = module.weight.detach().float()
    if args.group_size is not None:
        if weight.shape[1] % args.group_size:
            raise ValueError(f"{name}: input size {weight.shape[1]} is not a multiple of "
                             f"--group-size {args.group_size}")
        weight = weight.reshape(weight.shape[0], -1, args.group_size)  # (out, groups, group_size)
    else:
        weight = weight.unsqueeze(1)  # (out, 1, in): one scale per output channel
    scale, zero_point = calculate_qparams(weight.amin(-1), weight.amax(-1), args)
    with torch.no_grad():
        module.weight_scale.copy_(scale.reshape(module.weight_scale.shape))
        module.weight_zero_point.copy_(zero_point.reshape(module.weight_zero_point.shape))


def run_quantize(cfg: QuantizeConfig) -> Path:
    if not cfg.model or not cfg.out:
        raise ValueError("--model and --out are required")
    out = quantize_model(cfg.model, cfg.out, cfg.scheme, cfg.group_size)
    print(f"quantized {cfg.model} ({cfg.scheme}) -> {out}")
    return out
