"""The RLHF commands of `python -m training`: name -> (recipe sections, function, help)."""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from training.recipe import Recipe, parse_command_line

# command -> (module, sections attribute, function name, help)
COMMANDS = {
    "reward": ("training.rlhf.reward", "train_reward", "reward model (scalar head + LoRA) from preference pairs"),
    "ppo": ("training.rlhf.ppo.trainer", "train_ppo", "PPO policy LoRA against a reward model, KL-penalised"),
    "dpo": ("training.rlhf.dpo", "train_dpo", "DPO policy LoRA from preference pairs (no reward model)"),
    "grpo": ("training.rlhf.grpo", "train_grpo", "GRPO policy LoRA against a reward model (no critic)"),
}


def sections_of(command: str) -> dict[str, type]:
    return importlib.import_module(COMMANDS[command][0]).SECTIONS


def run(command: str, recipe: Recipe) -> dict:
    module, fn, _ = COMMANDS[command]
    return getattr(importlib.import_module(module), fn)(recipe)


def run_command_line(command: str, argv: Sequence[str]) -> dict:
    module, _, help = COMMANDS[command]
    doc = (importlib.import_module(module).__doc__ or help).strip()
    return run(command, parse_command_line(command, sections_of(command), argv, doc))
