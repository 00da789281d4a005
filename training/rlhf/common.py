"""What the RLHF commands share with each other and with the SFT pipeline (training.methods.common).

Each command (reward, ppo, dpo, grpo) runs: pre-flight (the policy LoRA must be servable) ->
preference data -> its trainer -> save -> evaluate -> run.json -> optional publish. The run
directory matches the SFT one, so `python -m training publish --run RUN` works on it too:

    RUN/adapter/      the aligned policy: a plain PEFT LoRA the server hot-loads (ppo, dpo, grpo)
    RUN/reward/       the reward model: LoRA + scalar head on the base (reward; never served)
    RUN/value_head.safetensors   PPO's critic, kept beside the adapter (not published)
    RUN/run.json      method, base, template, data, hyper-parameters, reward/KL figures

On several processes (training/distributed.py) each trains its share and only the main one
saves, evaluates, writes run.json and publishes; the others wait at a barrier.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from training.recipe import Recipe
from training.data.dataset import file_sha256
from training.devices import CHECKPOINTING_KWARGS, autocast_bf16, cpu_threads, gradient_checkpointing
from training.methods.common import BaseFacts, Method, preflight, run_dir, save_result
from training.methods.lora import LoraOptions, lora_config, refuse_lora
from training.sections import ModelConfig, OutputConfig, TrainConfig
from training.rlhf.preferences import PreferenceDataConfig, PreferenceSplits

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
    greedy: bool = False
    """Greedy rollouts (every response to a prompt the same): no exploration, so not for training;
    for checking one rollout engine against another, step for step."""

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


def start(recipe: Recipe, method: Method) -> tuple[BaseFacts, Path, Any]:
    """Pre-flight (refuse unservable recipes before any work), run directory, tokenizer, threads."""
    facts = preflight(recipe, method)
    out = run_dir(recipe)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(recipe.train.seed)
    if not torch.cuda.is_available():
        torch.set_num_threads(cpu_threads(getattr(recipe.train, "threads", 0)))
    return facts, out, AutoTokenizer.from_pretrained(recipe.model.base)


def load_policy_base(base: str | Path, dtype: torch.dtype = torch.float32):
    """The policy's base (recipe: training.devices.training_dtype(recipe)); the trainer moves it to its device."""
    return AutoModelForCausalLM.from_pretrained(base, dtype=dtype)


def trainer_args(cls: type, recipe: Recipe, out: Path, **extra: Any):
    """A TRL config (RewardConfig, DPOConfig, GRPOConfig) from the recipe's `train` section."""
    t = recipe.train
    checkpointing = gradient_checkpointing(recipe)
    return cls(
        output_dir=str(out), seed=t.seed, data_seed=t.seed, num_train_epochs=t.epochs, max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size, per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation, learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler, warmup_steps=t.warmup, weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm, bf16=autocast_bf16(recipe), logging_steps=t.logging_steps,
        logging_first_step=True, save_strategy="steps", save_steps=t.save_steps, save_total_limit=2,
        report_to=["tensorboard"], disable_tqdm=not t.progress, gradient_checkpointing=checkpointing,
        gradient_checkpointing_kwargs=dict(CHECKPOINTING_KWARGS) if checkpointing else None,
        dataloader_num_workers=0, ddp_find_unused_parameters=False,  # every LoRA weight gets a gradient
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
        # Compared in the training dtype: a base loaded in bf16 is the file's weights rounded.
        if key in on_disk and not torch.equal(tensor.cpu(), on_disk[key].to(tensor.dtype)):
            changed.append(key)
    return changed


def save_policy(model, method: Method, out: Path, tokenizer, facts: BaseFacts, recipe: Recipe,
                state_dict: dict[str, torch.Tensor] | None = None) -> Path:
    """Save the trained LoRA as RUN/adapter, refusing (like SFT) a config a trainer made unservable,
    and refusing a run whose base weights moved (checked on an unsharded model only)."""
    changed = changed_base_weights(model, facts.path) if state_dict is None else []
    if changed:
        raise RuntimeError(f"{method.name}: training changed base weights {changed[:5]}; the adapter would not fit "
                           "the served base")
    return save_result(model, method, out, tokenizer, facts, recipe, state_dict)


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


def finish_policy(recipe: Recipe, method: str, facts: BaseFacts, out: Path, data, training: dict, adapter: Path,
                  scorer=None) -> dict:
    """The main process's work after saving a policy: evaluate it against the reward model (if
    there is one), write run.json, publish."""
    evaluation = None
    if recipe.output.evaluate and data.test and scorer is not None:
        from training.rlhf.policy_eval import evaluate_policies

        evaluation = evaluate_policies(recipe.model.base, {method: adapter}, PreferenceSplits.prompts(data.test)
                                       [: recipe.output.eval_examples], scorer, recipe.output.max_new_tokens)
    summary = write_run(out, recipe, method, facts, data.template, data.report, training, evaluation)
    summary["artifact"] = str(adapter)
    log.warning(f"{method}: wrote {adapter}")
    return publish_if_asked(summary, out, recipe)


def publish_if_asked(summary: dict, out: Path, recipe: Recipe) -> dict:
    if recipe.output.publish:
        from training.publish import publish_run

        summary["published"] = str(publish_run(out, adapters_dir=recipe.output.adapters_dir))
    return summary


def policy_lora(recipe: Recipe):
    """The policy's PEFT config; the same checks as SFT LoRA (no modules_to_save, DoRA, bias)."""
    return lora_config(recipe.lora)
