"""Training on a time budget: a learning-rate schedule that ends when the steps *or* the time run out.

With `train.max_minutes`, the schedule's progress is max(step / max_steps, elapsed / budget), so
a run cut short by a slow (or busy) machine still anneals its learning rate to the end instead
of stopping at the peak; `TimeLimit` then stops the Trainer. Used by the demo build so it fits
its time on 2 shared cores; the steps reached are recorded in run.json.
"""

from __future__ import annotations

import logging
import math
import time

import torch
from transformers import TrainerCallback

log = logging.getLogger("training")


class Clock:
    def __init__(self, minutes: float) -> None:
        self.budget = 60 * minutes
        self.start = time.monotonic()

    def restart(self) -> None:
        self.start = time.monotonic()

    def fraction(self) -> float:
        return (time.monotonic() - self.start) / self.budget


def budget_schedule(optimizer: torch.optim.Optimizer, kind: str, warmup_steps: int, max_steps: int,
                    clock: Clock) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = min(1.0, max(step / max(max_steps, 1), clock.fraction()))
        if kind == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        if kind == "linear":
            return 1 - progress
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class TimeLimit(TrainerCallback):
    """Stop (and checkpoint) once the clock's budget is spent."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def on_train_begin(self, args, state, control, **kwargs):
        self.clock.restart()

    def on_step_end(self, args, state, control, **kwargs):
        if self.clock.fraction() >= 1:
            log.warning(f"time budget reached at step {state.global_step} of {state.max_steps}")
            control.should_training_stop = True
            control.should_save = True
        return control


def trainer_class(minutes: float, scheduler: str, base: type | None = None):
    """`base` (a transformers Trainer class; default TRL's SFTTrainer), or (with a time budget) a
    subclass whose schedule also follows the clock."""
    if base is None:
        from trl import SFTTrainer as base

    if minutes <= 0:
        return base, []
    clock = Clock(minutes)

    class BudgetedTrainer(base):
        def create_scheduler(self, num_training_steps, optimizer=None):
            if self.lr_scheduler is None:
                self.lr_scheduler = budget_schedule(optimizer or self.optimizer, scheduler,
                                                    self.args.get_warmup_steps(num_training_steps),
                                                    num_training_steps, clock)
            return self.lr_scheduler

    return BudgetedTrainer, [TimeLimit(clock)]
