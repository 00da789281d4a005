"""Where a training process runs and in what precision: device, weight dtype, autocast, checkpointing, threads.

    device()                        cuda:LOCAL_RANK where CUDA is available, else cpu
    native_bf16()                   whether bfloat16 math is fast here
    training_dtype(recipe, trains_base_weights)
                                    dtype the base weights are loaded in (model.dtype, or auto)
    autocast_bf16(recipe)           whether the trainer runs under bf16 autocast (train.bf16, or auto)
    gradient_checkpointing(recipe)  whether backward recomputes activations (train.gradient_checkpointing, or auto)
    enable_gradient_checkpointing(model)
    cpu_threads(0)                  torch threads for this process: the idle cores, shared among its machine's processes

"auto" means: bfloat16 where bf16 math is native (a CUDA GPU with bf16: half the memory of
float32, tensor-core speed; a CPU with AVX-512, whose oneDNN kernels do bf16), float32 elsewhere
(an AVX2-only CPU emulates bf16: a demo training step cost 3-20x a float32 one on this repo's
2-core AVX2 machine). Except where the base's own tensors train in full (full and selective
fine-tuning, classifier heads and layers, a reward model's head): there auto is float32 on every
host, bf16 only as autocast. Those tensors are the optimizer's master copies, and AdamW steps
below bf16's resolution (2^-8 of the weight) would be lost in bf16 ones; and a model directory
written back from bf16 would have its frozen tensors rounded too. Loaded in float32 and cast back
to the checkpoint's dtype, frozen tensors come out bit-identical (float32 holds every bf16 and
float16 value exactly). LoRA factors and soft prompts are float32 either way (PEFT keeps
adapter weights in float32 over a bf16 base). QLoRA checkpoints activations by default, as the
QLoRA recipe does (its point is fitting a large base in little memory).
"""

from __future__ import annotations

import os

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# use_reentrant=False: the reentrant implementation needs an input that requires grad (a frozen
# PEFT base has none without enable_input_require_grads), breaks with DDP when parameters are
# reused, and is the one torch deprecates.
CHECKPOINTING_KWARGS = {"use_reentrant": False}


def device() -> torch.device:
    """This process's device: its own GPU (LOCAL_RANK, set by torchrun / accelerate launch) or the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def native_bf16() -> bool:
    """Whether bf16 math runs fast here: a CUDA GPU with bf16, or a CPU whose kernels use AVX-512
    (oneDNN's bf16 needs it; AVX2-only CPUs emulate it)."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def training_dtype(recipe, trains_base_weights: bool = False) -> torch.dtype:
    """model.dtype, or (auto) float32 where some of the base's own tensors train
    (`trains_base_weights`), else bfloat16 where native_bf16(), else float32."""
    name = recipe.model.dtype
    if name == "auto":
        name = "bfloat16" if native_bf16() and not trains_base_weights else "float32"
    return DTYPES[name]


def autocast_bf16(recipe) -> bool:
    """train.bf16, or (auto) on where native_bf16()."""
    return recipe.train.bf16 if recipe.train.bf16 is not None else native_bf16()


def gradient_checkpointing(recipe) -> bool:
    """train.gradient_checkpointing, or (auto) on for qlora only."""
    flag = recipe.train.gradient_checkpointing
    return flag if flag is not None else recipe.command == "qlora"


def enable_gradient_checkpointing(model) -> None:
    """Recompute each decoder layer's activations in backward instead of keeping them (less memory, ~1.3x the time).

    Input gradients are switched on so that checkpointed layers under a frozen (PEFT) base still
    have something to backpropagate to. (The config's use_cache stays as it is: it is saved with
    full/selective models; TRL's trainers pass use_cache=False to every training forward.)"""
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=dict(CHECKPOINTING_KWARGS))
    model.enable_input_require_grads()


def cpu_threads(requested: int = 0) -> int:
    """Threads for torch: `requested`, or the cores not already busy (1-minute load average)
    divided among this machine's training processes (LOCAL_WORLD_SIZE, set by torchrun).

    Measured here on a 2-core machine with load ~8: one train step took 0.9 s with 1 thread and
    3.6-22 s with 2 (threads spin-waiting for a core the other processes hold)."""
    if requested > 0:
        return requested
    cores = os.cpu_count() or 1
    idle = max(1, min(cores, round(cores - os.getloadavg()[0])))
    return max(1, idle // int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
