"""GRPO: critic-free policy optimisation with the reward model as the reward function (TRL's GRPOTrainer).

    python -m training grpo --config training/recipes/rlhf/grpo-demo.yaml [--publish]

For each prompt the policy samples `num_generations` responses; each response's advantage is its
reward minus the group's mean (divided by the group's std), so no value head is needed
(Shao et al. 2024). The KL to the reference (adapter disabled) is a loss term weighted by
`kl_beta`. train.batch_size counts responses per step (a multiple of num_generations).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from datasets import Dataset

from training.recipe import Recipe
from training.devices import training_dtype
from training.distributed import full_state_dict, on_main_then_wait
from training.rlhf.common import (
    RewardModelConfig,
    RolloutConfig,
    finish_policy,
    load_policy_base,
    policy_lora,
    policy_method,
    save_policy,
    sections,
    start,
    trainer_args,
)
from training.rlhf.preferences import PreferenceSplits, load_preferences

log = logging.getLogger("training")


@dataclass
class GRPOOptions:
    """GRPO: group size, KL weight and clipping."""

    num_generations: int = 4
    """Responses sampled per prompt (the group whose mean reward is the baseline); >= 2."""
    kl_beta: float = 0.04
    """Weight of the KL(π || π_ref) loss term (0: no reference model, no KL)."""
    grpo_epsilon: float = 0.2
    """Clipping ε of the policy ratio."""
    grpo_iterations: int = 1
    """Optimisation passes per generated batch (μ in the paper)."""

    def validate(self) -> None:
        if self.num_generations < 2:
            raise ValueError("grpo.num_generations must be at least 2")


SECTIONS = sections(reward=RewardModelConfig, rollout=RolloutConfig, grpo=GRPOOptions)
METHOD = policy_method("grpo", "GRPO policy (LoRA) against a reward model")


class RewardModelReward:
    """A GRPO reward function backed by RewardScorer: prompts and completions are plain text."""

    __name__ = "reward_model"

    def __init__(self, scorer, missing_eos_penalty: float | None = None, eos_id: int | None = None) -> None:
        self.scorer, self.penalty, self.eos_id = scorer, missing_eos_penalty, eos_id

    def __call__(self, prompts, completions, completion_ids=None, **kwargs) -> list[float]:
        scores = self.scorer.score(prompts, completions).tolist()
        if self.penalty is not None and completion_ids is not None:
            scores = [s - (self.penalty if not ids or ids[-1] != self.eos_id else 0.0)
                      for s, ids in zip(scores, completion_ids)]
        return scores


def train_grpo(recipe: Recipe) -> dict:
    from trl import GRPOConfig, GRPOTrainer

    from training.rlhf.reward import RewardScorer

    facts, out, tokenizer = start(recipe, METHOD)
    if not recipe.reward.reward_model:
        raise ValueError("grpo needs a reward model: set reward.reward_model (or --reward-model RUN/reward)")
    data = load_preferences(recipe.data, tokenizer, seed=recipe.train.seed)
    scorer = RewardScorer(recipe.reward.reward_model, recipe.reward.reward_batch_size)
    g, r = recipe.grpo, recipe.rollout
    if recipe.train.batch_size % g.num_generations:
        raise ValueError(f"train.batch_size ({recipe.train.batch_size}) must be a multiple of "
                         f"grpo.num_generations ({g.num_generations}): GRPO steps over whole groups")
    args = trainer_args(GRPOConfig, recipe, out, num_generations=g.num_generations, max_completion_length=r.response_length,
                        temperature=r.temperature, beta=g.kl_beta, epsilon=g.grpo_epsilon,
                        num_iterations=g.grpo_iterations, top_k=0, eval_strategy="no")
    prompts = Dataset.from_list([{"prompt": p} for p in PreferenceSplits.prompts(data.train)])
    reward = RewardModelReward(scorer, r.missing_eos_penalty, tokenizer.eos_token_id)
    trainer = GRPOTrainer(model=load_policy_base(recipe.model.base, training_dtype(recipe)), reward_funcs=[reward],
                          args=args, train_dataset=prompts, processing_class=tokenizer, peft_config=policy_lora(recipe))
    started = time.monotonic()
    result = trainer.train()
    state_dict = full_state_dict(trainer)  # every process: a collective under FSDP / DeepSpeed
    adapter = on_main_then_wait(lambda: save_policy(trainer.model, METHOD, out, tokenizer, facts, recipe, state_dict))
    logged = [h for h in trainer.state.log_history if "reward" in h]
    training = {"steps": result.global_step, "train_loss": result.training_loss,
                "seconds": round(time.monotonic() - started, 1),
                "first_reward": logged[0]["reward"] if logged else None,
                "final_reward": logged[-1]["reward"] if logged else None,
                "final_kl": logged[-1].get("kl") if logged else None, "reward_model": recipe.reward.reward_model,
                "processes": trainer.accelerator.num_processes}
    del trainer, state_dict
    return on_main_then_wait(lambda: finish_policy(recipe, "grpo", facts, out, data, training, adapter, scorer)) \
        or {"training": training}
