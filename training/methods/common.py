"""The pipeline every method shares: pre-flight, data, model, TRL's SFTTrainer, save, eval, publish.

A method (one file each in this folder) only says what differs: its option sections, how the
model is loaded (QLoRA quantizes), how it is made trainable (a PEFT config, or which layers to
unfreeze), and why a recipe would give something the server cannot load. The rest is here.

Run directory layout (`train.output_dir`, default runs/NAME):
    checkpoint-*/          resumable Trainer checkpoints (`--resume`)
    runs/                  TensorBoard event files (loss, learning rate, grad norm)
    adapter/ or model/     the result: a PEFT adapter, or a full model directory (full/selective)
    run.json               what `publish` needs: method, base, template, data, hyper-parameters, metrics
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, set_seed
from transformers.trainer_utils import get_last_checkpoint

from training.config import Recipe
from training.data import DataConfig, describe, load_splits
from training.options import ModelConfig, OutputConfig, TrainConfig

log = logging.getLogger("training")


class Refused(ValueError):
    """The recipe would produce something the server cannot load (or cannot run at all); says why."""


@dataclass(frozen=True)
class Method:
    """What one fine-tuning method adds to the shared pipeline."""

    name: str
    help: str
    produces: Literal["adapter", "model"]
    options: dict[str, type] = field(default_factory=dict)
    """Extra recipe sections, e.g. {"lora": LoraOptions}."""
    prepare: Callable[[PreTrainedModel, Recipe, Any], torch.nn.Module] = lambda model, recipe, tok: model
    """Make the loaded model trainable: wrap in PEFT, or freeze/unfreeze parameters."""
    load_model: Callable[[Recipe], PreTrainedModel] | None = None
    """Load the base for training (default: float32 weights)."""
    refuse: Callable[[Recipe, "BaseFacts"], list[str]] = lambda recipe, facts: []
    """Reasons the recipe cannot give a servable result, checked before anything heavy runs."""

    @property
    def sections(self) -> dict[str, type]:
        return {"model": ModelConfig, "data": DataConfig, "train": TrainConfig, **self.options,
                "output": OutputConfig}


@dataclass(frozen=True)
class BaseFacts:
    """What pre-flight checks need to know about the base model, read without loading weights."""

    path: Path
    vocab_size: int
    tokenizer_size: int
    linear_modules: dict[str, str]
    """Module path -> class name, for every module whose name a PEFT target could match."""
    num_layers: int
    dtype: torch.dtype

    @classmethod
    def read(cls, base: str | Path) -> "BaseFacts":
        path = Path(base)
        if not (path / "config.json").is_file():
            raise Refused(f"model.base {str(base)!r} is not a model directory (no config.json)")
        config = AutoConfig.from_pretrained(path)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
        modules = {name: type(m).__name__ for name, m in model.named_modules() if name}
        text = config.get_text_config()
        dtype = getattr(config, "dtype", None) or torch.float32
        dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        tokenizer = AutoTokenizer.from_pretrained(path)
        return cls(path, text.vocab_size, len(tokenizer), modules, text.num_hidden_layers, dtype)


def run_dir(recipe: Recipe) -> Path:
    return Path(recipe.train.output_dir or f"runs/{adapter_name(recipe)}")


def adapter_name(recipe: Recipe) -> str:
    return recipe.output.name or f"{Path(recipe.model.base).name}-{recipe.command}"


def preflight(recipe: Recipe, method: Method) -> BaseFacts:
    """Refuse, with every reason at once, a recipe whose result the server could not load."""
    if not recipe.model.base:
        raise Refused("no base model: set model.base (or --base)")
    facts = BaseFacts.read(recipe.model.base)
    reasons = list(method.refuse(recipe, facts))
    if method.produces == "adapter" and facts.tokenizer_size > facts.vocab_size:
        reasons.append(f"the tokenizer has {facts.tokenizer_size} tokens but the model only {facts.vocab_size} "
                       "embeddings: added tokens need new embedding rows (modules_to_save), which adapters "
                       "cannot carry to the server")
    if recipe.output.publish and method.produces != "adapter":
        reasons.append(f"`{method.name}` writes a model directory, not an adapter: serve it with "
                       "`python -m server --model RUN/model` instead of --publish")
    if reasons:
        raise Refused("refusing this recipe:\n  - " + "\n  - ".join(reasons))
    return facts


def sft_config(recipe: Recipe, out: Path, has_validation: bool):
    from trl import SFTConfig

    t = recipe.train
    return SFTConfig(
        output_dir=str(out),
        seed=t.seed,
        data_seed=t.seed,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        bf16=t.bf16,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        eval_strategy="steps" if has_validation and t.eval_steps > 0 else "no",
        eval_steps=t.eval_steps or None,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=2,
        report_to=["tensorboard"],
        disable_tqdm=not t.progress,
        # Tiny models on CPU: checkpointing activations only costs time.
        gradient_checkpointing=False,
        # The data is tokenized and truncated by training.data (which counts what it cuts).
        max_length=None,
        dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),
    )


def cpu_threads(requested: int) -> int:
    """Threads for torch: `requested`, or the cores not already busy (1-minute load average).

    Measured here on a 2-core machine with load ~8: one train step took 0.9 s with 1 thread and
    3.6-22 s with 2 (threads spin-waiting for a core the other processes hold).
    """
    if requested > 0:
        return requested
    import os

    cores = os.cpu_count() or 1
    return max(1, min(cores, round(cores - os.getloadavg()[0])))


def save_result(model: torch.nn.Module, method: Method, out: Path, tokenizer, facts: BaseFacts, recipe: Recipe) -> Path:
    if method.produces == "adapter":
        from training.methods.servable import check_peft_config

        config = model.peft_config["default"]
        # Last guard: a trainer could have changed the config (TRL adds modules_to_save when it
        # clones a chat template that adds tokens).
        problems = check_peft_config(config, recipe.output.max_lora_rank)
        if problems:
            raise Refused("the trained adapter would not be servable: " + "; ".join(problems))
        # Stored in the base model's dtype, so the server sees one dtype per model.
        for p in model.parameters():
            if p.requires_grad:
                p.data = p.data.to(facts.dtype)
        if getattr(config, "target_modules", None):
            config.target_modules = sorted(config.target_modules)  # deterministic adapter_config.json
        target = out / "adapter"
        model.save_pretrained(str(target), safe_serialization=True)
    else:
        target = out / "model"
        model.to(facts.dtype).save_pretrained(str(target))
        tokenizer.save_pretrained(str(target))
    return target


def train(recipe: Recipe, method: Method) -> dict:
    """Run one recipe end to end; returns the run summary (also written to run.json)."""
    from training.evaluate import compare
    from training.methods.budget import trainer_class
    from training.publish import publish_run

    facts = preflight(recipe, method)
    out = run_dir(recipe)
    out.mkdir(parents=True, exist_ok=True)
    set_seed(recipe.train.seed)
    if not torch.cuda.is_available():
        torch.set_num_threads(cpu_threads(recipe.train.threads))
    tokenizer = AutoTokenizer.from_pretrained(recipe.model.base)
    splits = load_splits(recipe.data, tokenizer, seed=recipe.train.seed)
    log.warning(describe(splits.report))

    model = method.load_model(recipe) if method.load_model else AutoModelForCausalLM.from_pretrained(
        recipe.model.base, dtype=torch.float32)
    model = method.prepare(model, recipe, tokenizer)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log.warning(f"{method.name}: training {trainable:,} of {total:,} parameters ({100 * trainable / total:.2f}%)")

    trainer_cls, callbacks = trainer_class(recipe.train.max_minutes, recipe.train.lr_scheduler)
    trainer = trainer_cls(model=model, args=sft_config(recipe, out, splits.validation is not None),
                          train_dataset=splits.train, eval_dataset=splits.validation, processing_class=tokenizer,
                          callbacks=callbacks)
    resume = get_last_checkpoint(str(out)) if recipe.train.resume else None
    if recipe.train.resume and resume is None:
        log.warning(f"--resume: no checkpoint in {out}, starting from scratch")
    started = time.monotonic()
    result = trainer.train(resume_from_checkpoint=resume)
    summary: dict[str, Any] = {
        "name": adapter_name(recipe),
        "method": method.name,
        "produces": method.produces,
        "base_model": str(facts.path.resolve()),
        "prompt_template": splits.template.manifest(),
        "data": {"file": recipe.data.train, **splits.report},
        "hyperparameters": recipe.to_dict(),
        "training": {"steps": result.global_step, "threads": torch.get_num_threads(), "train_loss": result.training_loss,
                     "seconds": round(time.monotonic() - started, 1), "resumed_from": resume},
    }
    if splits.validation is not None and len(splits.validation):
        summary["training"]["eval_loss"] = trainer.evaluate()["eval_loss"]
    artifact = save_result(trainer.model, method, out, tokenizer, facts, recipe)
    summary["artifact"] = str(artifact)
    del trainer, model
    if recipe.output.evaluate and splits.test_examples:
        summary["evaluation"] = compare(
            recipe.model.base, artifact, splits.test_examples[: recipe.output.eval_examples], splits.template,
            metric=recipe.output.metric, max_new_tokens=recipe.output.max_new_tokens)
    (out / "run.json").write_text(json.dumps(summary, indent=2, default=str))
    log.warning(f"{method.name}: wrote {artifact}")
    if recipe.output.publish:
        summary["published"] = str(publish_run(out, adapters_dir=recipe.output.adapters_dir))
    return summary
