"""Training on several processes: who trains, who writes, who waits.

    torchrun --nproc-per-node 2 -m training lora --config R.yaml
    accelerate launch --config_file training/accelerate/ddp.yaml --num_processes 2 -m training lora --config R.yaml

Every process reads the recipe and the data, loads the model and trains on its share of each
batch; gradients are all-reduced, so every process holds the same weights after each step (the
HF/TRL trainers wrap the model in DDP, or FSDP / DeepSpeed from an accelerate config; our PPO
uses an `Accelerator`). train.batch_size is per process: a step sees batch_size x processes x
gradient_accumulation examples. Only the main process (rank 0) writes the result, run.json and
the evaluation, and publishes; the others wait for it at a barrier, so the command ends on every
process once the run directory is complete. Without CUDA the processes talk over gloo.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import TypeVar

import torch

T = TypeVar("T")


def state():
    """accelerate's view of this process (initialises the process group when launched with several)."""
    from accelerate import PartialState

    # cpu=True without CUDA: otherwise accelerate sees no distributed device and runs each
    # process alone (DistributedType.NO) instead of over gloo.
    return PartialState(cpu=not torch.cuda.is_available())


def is_main() -> bool:
    return state().is_main_process


def process_count() -> int:
    return state().num_processes


def wait_for_everyone() -> None:
    state().wait_for_everyone()


def on_main_then_wait(work: Callable[[], T]) -> T | None:
    """Run `work` (save, evaluate, write run.json, publish) on the main process only; every
    process then waits at a barrier until it is done (also when it raised, so none hangs)."""
    try:
        return work() if is_main() else None
    finally:
        wait_for_everyone()


def fingerprint(tensors: Iterable[torch.Tensor]) -> str:
    """sha256 of the tensors' bytes, in order: equal only for bit-identical weights."""
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def check_same_weights(tensors: Iterable[torch.Tensor]) -> str:
    """The weights' fingerprint, after checking that every process holds bit-identical ones
    (data-parallel training all-reduces gradients, so any difference is a bug); raises otherwise."""
    from accelerate.utils import gather_object

    mine = fingerprint(tensors)
    if process_count() > 1:
        every = gather_object([mine])
        if len(set(every)) != 1:
            raise RuntimeError(f"trained weights differ between processes: {every}")
    return mine


def sharded(trainer) -> bool:
    """Whether no single process holds the whole model (FSDP, DeepSpeed)."""
    return bool(getattr(trainer, "is_fsdp_enabled", False) or getattr(trainer, "is_deepspeed_enabled", False))


def full_state_dict(trainer) -> dict[str, torch.Tensor] | None:
    """The whole model's weights on the main process, gathered from the shards (a collective: every
    process must call it), as `Trainer.save_model` gathers them; None when the model is not sharded
    (the in-memory model is then whole on every process)."""
    if not sharded(trainer):
        return None
    if trainer.is_deepspeed_enabled:
        return trainer.accelerator.get_state_dict(trainer.deepspeed)
    return trainer.accelerator.get_state_dict(trainer.model)
