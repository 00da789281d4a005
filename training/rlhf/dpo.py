"""DPO: the policy learns the preferences directly, with no reward model and no sampling (TRL's DPOTrainer).

    python -m training dpo --config training/recipes/rlhf/dpo-demo.yaml [--publish]

Loss per pair: -log σ(β · [(log π(y_w|x) - log π_ref(y_w|x)) - (log π(y_l|x) - log π_ref(y_l|x))]),
the closed form of "maximise reward - β·KL(π || π_ref)" (Rafailov et al. 2023). π is the base +
LoRA, π_ref the same model with the adapter disabled. The same preference files as `reward`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Literal

from datasets import Dataset

from training.recipe import Recipe
from training.devices import training_dtype
from training.distributed import full_state_dict, on_main_then_wait
from training.rlhf.common import (
    RewardModelConfig,
    finish_policy,
    load_policy_base,
    policy_lora,
    policy_method,
    save_policy,
    sections,
    start,
    trainer_args,
)
from training.rlhf.preferences import load_preferences

log = logging.getLogger("training")


@dataclass
class DPOOptions:
    """DPO objective."""

    beta: float = 0.1
    """β: strength of the implicit KL constraint to the reference (higher stays closer)."""
    dpo_loss: Literal["sigmoid", "ipo", "hinge", "robust"] = "sigmoid"
    """Loss form: sigmoid (DPO), ipo, hinge (SLiC), robust (noisy labels)."""
    label_smoothing: float = 0.0
    """Assumed fraction of flipped labels (conservative DPO / robust); 0 trusts every label."""


SECTIONS = sections(dpo=DPOOptions, reward=RewardModelConfig)
METHOD = policy_method("dpo", "DPO policy (LoRA) from preference pairs")


def train_dpo(recipe: Recipe) -> dict:
    from trl import DPOConfig, DPOTrainer

    facts, out, tokenizer = start(recipe, METHOD)
    data = load_preferences(recipe.data, tokenizer, seed=recipe.train.seed)
    args = trainer_args(DPOConfig, recipe, out, eval_strategy="no", beta=recipe.dpo.beta,
                        loss_type=[recipe.dpo.dpo_loss], label_smoothing=recipe.dpo.label_smoothing, max_length=None)
    # No ref_model: with a PEFT model TRL computes the reference with the adapter disabled.
    trainer = DPOTrainer(model=load_policy_base(recipe.model.base, training_dtype(recipe)), args=args,
                         train_dataset=Dataset.from_list(data.train), processing_class=tokenizer,
                         peft_config=policy_lora(recipe))
    started = time.monotonic()
    result = trainer.train()
    state_dict = full_state_dict(trainer)  # every process: a collective under FSDP / DeepSpeed
    adapter = on_main_then_wait(lambda: save_policy(trainer.model, METHOD, out, tokenizer, facts, recipe, state_dict))
    metrics = {k: v for k, v in (trainer.state.log_history[-2] if len(trainer.state.log_history) > 1 else {}).items()
               if k.startswith("rewards/") or k.startswith("logps/")}
    training = {"steps": result.global_step, "train_loss": result.training_loss,
                "seconds": round(time.monotonic() - started, 1), "last_logged": metrics,
                "processes": trainer.accelerator.num_processes}
    del trainer, state_dict
    return on_main_then_wait(lambda: finish_policy(recipe, "dpo", facts, out, data, training, adapter,
                                                   reward_scorer(recipe))) or {"training": training}


def reward_scorer(recipe: Recipe):
    """The reward model to evaluate against, if the recipe names one (DPO itself needs none)."""
    if not (recipe.output.evaluate and recipe.reward.reward_model):
        return None
    from training.rlhf.reward import RewardScorer

    return RewardScorer(recipe.reward.reward_model, recipe.reward.reward_batch_size)
