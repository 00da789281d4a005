"""Reward model: a scalar head on the base (LoRA + new linear `score`), trained on preference pairs.

    python -m training reward --config training/recipes/rlhf/reward-demo.yaml

TRL's RewardTrainer minimises -log σ(r(x, y_chosen) - r(x, y_rejected)) (Bradley-Terry). The
result, RUN/reward/, is a PEFT adapter of a sequence classifier (its `score` head is saved as a
`modules_to_save` module; fine here, the reward model is never served) plus reward.json naming
the base model and template. `RewardScorer(RUN/reward)` loads it to score texts (PPO, GRPO,
evaluation); held-out pairwise accuracy = P(r(chosen) > r(rejected)) on held-out prompts.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from datasets import Dataset
from peft import LoraConfig, PeftModel, TaskType
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from training.recipe import Recipe
from training.devices import device as default_device
from training.devices import training_dtype
from training.distributed import full_state_dict, on_main_then_wait
from training.rlhf.common import policy_method, sections, start, trainer_args, write_run
from training.rlhf.preferences import load_preferences

log = logging.getLogger("training")

SECTIONS = sections()
METHOD = policy_method("reward", "reward model")


def load_classifier(base: str | Path, dtype: torch.dtype = torch.float32):
    """The base as a 1-label sequence classifier (new `score` head; lm_head unused)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "score MISSING / lm_head UNEXPECTED" report is expected here
    try:
        return AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, dtype=dtype)
    finally:
        hf_logging.set_verbosity(level)


class RewardScorer:
    """Scores (prompt, response) texts with a saved reward model; higher is preferred.

        scorer = RewardScorer("runs/demo-reward/reward")
        scorer.score(["<|user|>\\nHi</s>\\n<|assistant|>\\n"], ["Hello! How can I help?"])  # tensor([1.7])

    `prompt` is the rendered prompt text (as in training); an eos is appended to each response,
    as RewardTrainer did to every chosen/rejected text. The model runs in float32 on `device`
    (default: this process's, training.devices.device()); scores come back on the CPU.
    """

    def __init__(self, path: str | Path, batch_size: int = 32, device: torch.device | None = None) -> None:
        path = Path(path)
        meta = json.loads((path / "reward.json").read_text())
        self.base = meta["base_model"]
        self.template = meta.get("prompt_template")
        self.tokenizer = AutoTokenizer.from_pretrained(self.base)
        model = load_classifier(self.base)
        model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model = PeftModel.from_pretrained(model.to(device or default_device()), path).eval()
        self.batch_size = batch_size

    @torch.no_grad()
    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        eos = self.tokenizer.eos_token
        texts = [p + (r if r.endswith(eos) else r + eos) for p, r in zip(prompts, responses, strict=True)]
        scores = []
        for start in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(texts[start:start + self.batch_size], return_tensors="pt", padding=True,
                                 padding_side="right").to(self.model.device)
            scores.append(self.model(**enc).logits[:, 0].float().cpu())
        return torch.cat(scores) if scores else torch.zeros(0)

    def pairwise_accuracy(self, rows: list[dict[str, str]]) -> float:
        """Fraction of pairs with r(chosen) > r(rejected)."""
        if not rows:
            return float("nan")
        prompts = [r["prompt"] for r in rows]
        chosen = self.score(prompts, [r["chosen"] for r in rows])
        rejected = self.score(prompts, [r["rejected"] for r in rows])
        return (chosen > rejected).float().mean().item()


def reward_lora(recipe: Recipe) -> LoraConfig:
    o = recipe.lora
    # SEQ_CLS: PEFT adds the new `score` head to modules_to_save (trained and saved in full).
    return LoraConfig(task_type=TaskType.SEQ_CLS, r=o.rank, lora_alpha=o.alpha, lora_dropout=o.dropout,
                      target_modules=list(o.target_modules), bias="none")


def train_reward(recipe: Recipe) -> dict:
    """Train, save RUN/reward, report held-out pairwise accuracy; returns the run summary."""
    from trl import RewardConfig, RewardTrainer

    facts, out, tokenizer = start(recipe, METHOD)
    data = load_preferences(recipe.data, tokenizer, seed=recipe.train.seed)
    log.warning(f"reward: {data.report}")
    args = trainer_args(RewardConfig, recipe, out, eval_strategy="no", max_length=None)  # before the model: ZeRO-3
    # The new score head trains in full (PEFT's modules_to_save): float32 master copies under auto.
    model = load_classifier(recipe.model.base, training_dtype(recipe, trains_base_weights=True))
    model.config.pad_token_id = tokenizer.pad_token_id
    trainer = RewardTrainer(model=model, args=args, train_dataset=Dataset.from_list(data.train),
                            processing_class=tokenizer, peft_config=reward_lora(recipe))
    started = time.monotonic()
    result = trainer.train()
    target = out / "reward"
    state_dict = full_state_dict(trainer)  # every process: a collective under FSDP / DeepSpeed

    def save() -> None:
        trainer.model.save_pretrained(str(target), state_dict=state_dict)
        (target / "reward.json").write_text(json.dumps({"base_model": str(facts.path.resolve()),
                                                        "prompt_template": data.template.manifest()}, indent=2))

    on_main_then_wait(save)
    training = {"steps": result.global_step, "train_loss": result.training_loss,
                "seconds": round(time.monotonic() - started, 1), "processes": trainer.accelerator.num_processes}
    del trainer, model, state_dict
    return on_main_then_wait(lambda: finish_reward(recipe, facts, out, data, training, target)) \
        or {"training": training}


def finish_reward(recipe: Recipe, facts, out: Path, data, training: dict, target: Path) -> dict:
    """Held-out pairwise accuracy and run.json: the main process's work after saving."""
    scorer = RewardScorer(target)
    training = {**training,
                "train_pairwise_accuracy": scorer.pairwise_accuracy(data.train[:500]),
                "heldout_pairwise_accuracy": scorer.pairwise_accuracy(data.test),
                "heldout_pairs": len(data.test)}
    log.warning(f"reward: held-out pairwise accuracy {training['heldout_pairwise_accuracy']:.3f} "
                f"on {len(data.test)} pairs (train {training['train_pairwise_accuracy']:.3f})")
    summary = write_run(out, recipe, "reward", facts, data.template, data.report, training, None,
                        produces="reward_model")
    summary["artifact"] = str(target)
    log.warning(f"reward: wrote {target}")
    return summary
