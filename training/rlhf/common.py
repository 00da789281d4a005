"""What the RLHF commands share with each other and with the SFT pipeline (training.methods.common).

Each command (reward, ppo, dpo, grpo) runs: pre-flight (the policy LoRA must be servable) ->
preference data -> its trainer -> save -> evaluate -> run.json -> optional publish. The run
directory matches the SFT one, so `python -m training publish --run RUN` works on it too:

    RUN/adapter/      the aligned policy: a plain PEFT LoRA the server hot-loads (ppo, dpo, grpo)
    RUN/reward/       the reward model: LoRA + scalar head on the base (reward; never served)
    RUN/value_head.safetensors   PPO's critic, kept beside the adapter (not published)
    RUN/run.json      method, base, template, data, hyper-parameters, reward/KL figures
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from training.config import Recipe
from training.data.dataset import file_sha256
from training.methods.common import BaseFacts, Method, preflight, run_dir, save_result
from training.methods.lora import LoraOptions, lora_config, refuse_lora
from training.options import ModelConfig, OutputConfig, TrainConfig
from training.rlhf.preferences import PreferenceDataConfig

log = logging.getLogger("training")


@dataclass
class RewardModelConfig:
    """The reward model that scores the policy's responses."""

    reward_model: str = ""
    """Reward model directory written by `python -m training reward` (RUN/reward)."""
    reward_batch_size: int = 32
    """Texts scored per forward pass of the reward model."""


@dataclass
class RolloutConfig:
    """How the policy samples responses during training."""

    response_length: int = 24
    """Most tokens a sampled response may have (it ends earlier at eos)."""
    temperature: float = 1.0
    """Sampling temperature of rollouts (1.0: the policy's own distribution, which the KL maths assume)."""
    missing_eos_penalty: float | None = None
    """Subtract this from the reward of responses cut at response_length without eos (None: no penalty)."""

    def validate(self) -> None:
        if self.response_length < 1 or self.temperature <= 0:
            raise ValueError("rollout: response_length must be >= 1 and temperature > 0")


def sections(**extra: type) -> dict[str, type]:
    """The recipe sections of an RLHF command: model, data, train, lora, <extra>, output."""
    return {"model": ModelConfig, "data": PreferenceDataConfig, "train": TrainConfig, "lora": LoraOptions,
            **extra, "output": OutputConfig}


def policy_method(name: str, help: str) -> Method:
    """A `Method` for the shared pre-flight and save: the policy is a LoRA adapter."""
    return Method(name=name, help=help, produces="adapter", options={"lora": LoraOptions}, refuse=refuse_lora)


def cpu_threads(requested: int = 0) -> int:
    """`requested` torch threads, or (0) the cores not already busy by the 1-minute load average.

    On a shared 2-core machine two threads spin-waiting for a busy core are several times slower
    than one."""
    if requested > 0:
        return requested
    cores = os.cpu_count() or 1
    return max(1, min(cores, round(cores - os.getloadavg()[0])))


def start(recipe: Recipe, method: Method) -> tuple[BaseFacts, Path, Any]:
    """Pre-flight (refuse unservable recipes before any work), run directory, tokenizer, threads."""
    facts = preflight(recipe, method)
    out = run_dir(recipe)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(recipe.train.seed)
    if not torch.cuda.is_available():
        torch.set_num_threads(cpu_threads(getattr(recipe.train, "threads", 0)))
    return facts, out, AutoTokenizer.from_pretrained(recipe.model.base)


def load_policy_base(base: str | Path):
    return AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)


def trainer_args(cls: type, recipe: Recipe, out: Path, **extra: Any):
    """A TRL config (RewardConfig, DPOConfig, GRPOConfig) from the recipe's `train` section."""
    t = recipe.train
    return cls(
        output_dir=str(out), seed=t.seed, data_seed=t.seed, num_train_epochs=t.epochs, max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size, per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation, learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler, warmup_steps=t.warmup, weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm, bf16=t.bf16, logging_steps=t.logging_steps, logging_first_step=True,
        save_strategy="steps", save_steps=t.save_steps, save_total_limit=2, report_to=["tensorboard"],
        disable_tqdm=not t.progress, gradient_checkpointing=False, dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(), **extra)


def changed_base_weights(model, base: str | Path) -> list[str]:
    """Names of base weights of the trained PeftModel that differ from the base model's files.

    The reference policy is the base with the adapter disabled, so a trainer that touched the base
    would silently move the reference too (and the adapter would not match the served base)."""
    from safetensors.torch import load_file

    on_disk: dict[str, torch.Tensor] = {}
    for f in sorted(Path(base).glob("*.safetensors")):
        on_disk.update(load_file(f))
    changed = []
    for name, tensor in model.get_base_model().state_dict().items():
        if "lora_" in name:
            continue
        key = name.replace(".base_layer", "")
        if key in on_disk and not torch.equal(tensor.to(on_disk[key].dtype), on_disk[key]):
            changed.append(key)
    return changed


def save_policy(model, method: Method, out: Path, tokenizer, facts: BaseFacts, recipe: Recipe) -> Path:
    """Save the trained LoRA as RUN/adapter, refusing (like SFT) a config a trainer made unservable,
    and refusing a run whose base weights moved."""
    changed = changed_base_weights(model, facts.path)
    if changed:
        raise RuntimeError(f"{method.name}: training changed base weights {changed[:5]}; the adapter would not fit "
                           "the served base")
    return save_result(model, method, out, tokenizer, facts, recipe)


def write_run(out: Path, recipe: Recipe, method: str, facts: BaseFacts, template, data_report: dict,
              training: dict, evaluation: dict | None, produces: str = "adapter") -> dict:
    """run.json in the shape `training.publish` reads (and the manifest shows)."""
    summary = {
        "name": recipe.output.name or f"{facts.path.name}-{method}",
        "method": method,
        "produces": produces,
        "base_model": str(facts.path.resolve()),
        "prompt_template": template.manifest(),
        "data": {**data_report, "sha256": file_sha256(recipe.data.train),
                 "train": {"examples": data_report.get("train_pairs")}},
        "hyperparameters": recipe.to_dict(),
        "training": training,
        "evaluation": evaluation,
    }
    (out / "run.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def publish_if_asked(summary: dict, out: Path, recipe: Recipe) -> dict:
    if recipe.output.publish:
        from training.publish import publish_run

        summary["published"] = str(publish_run(out, adapters_dir=recipe.output.adapters_dir))
    return summary


def policy_lora(recipe: Recipe):
    """The policy's PEFT config; the same checks as SFT LoRA (no modules_to_save, DoRA, bias)."""
    return lora_config(recipe.lora)
