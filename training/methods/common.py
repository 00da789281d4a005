"""The pipeline every method shares: pre-flight, data, model, TRL's SFTTrainer, save, eval, publish.

A method (one file each in this folder) only says what differs: its option sections, how the
model is loaded (QLoRA quantizes), how it is made trainable (a PEFT config, or which layers to
unfreeze), and why a recipe would give something the server cannot load. The rest is here.

Launched on several processes (torchrun, accelerate launch; see training/distributed.py) every
process trains its share of each batch and only the main one writes the run directory.

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

from training.recipe import Recipe
from training.data import DataConfig, describe, load_splits
from training.devices import (
    CHECKPOINTING_KWARGS,
    DTYPES,
    autocast_bf16,
    cpu_threads,
    enable_gradient_checkpointing,
    gradient_checkpointing,
    training_dtype,
)
from training.distributed import full_state_dict, on_main_then_wait, process_count
from training.sections import ModelConfig, OutputConfig, TrainConfig

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
    """Load the base for training (default: the weights in training.devices.training_dtype)."""
    refuse: Callable[[Recipe, "BaseFacts"], list[str]] = lambda recipe, facts: []
    """Reasons the recipe cannot give a servable result, checked before anything heavy runs."""
    trains_base_weights: bool = False
    """Some of the base's own tensors train in full (not through adapter weights): the base is
    loaded in float32 under model.dtype auto (training.devices.training_dtype)."""

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
    # float32 holds every bf16 and float16 value; bf16 and float16 do not hold each other's.
    if method.produces == "model" and recipe.model.dtype != "auto" \
            and DTYPES[recipe.model.dtype] not in (torch.float32, facts.dtype):
        reasons.append(f"model.dtype={recipe.model.dtype} would round the {str(facts.dtype).removeprefix('torch.')} "
                       "base's weights, frozen ones included, in the model directory written back: use auto or "
                       "the base's dtype (train.bf16 gives bf16 speed through autocast)")
    if recipe.output.publish and method.produces != "adapter":
        reasons.append(f"`{method.name}` writes a model directory, not an adapter: serve it with "
                       "`python -m server --model RUN/model` instead of --publish")
    if reasons:
        raise Refused("refusing this recipe:\n  - " + "\n  - ".join(reasons))
    return facts


def sft_config(recipe: Recipe, out: Path, has_validation: bool):
    from trl import SFTConfig

    t, packing = recipe.train, recipe.data.packing
    checkpointing = gradient_checkpointing(recipe)
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
        bf16=autocast_bf16(recipe),
        logging_steps=t.logging_steps,
        logging_first_step=True,
        eval_strategy="steps" if has_validation and t.eval_steps > 0 else "no",
        eval_steps=t.eval_steps or None,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=2,
        report_to=["tensorboard"],
        disable_tqdm=not t.progress,
        gradient_checkpointing=checkpointing,
        gradient_checkpointing_kwargs=dict(CHECKPOINTING_KWARGS) if checkpointing else None,
        # The data is tokenized and truncated by training.data (which counts what it cuts); packing
        # needs the row length.
        max_length=recipe.data.max_length if packing else None,
        packing=packing,
        padding_free=recipe.data.padding_free,
        dataloader_num_workers=0,
        # Every trainable parameter (LoRA, soft prompt, unfrozen layers) gets a gradient each step;
        # True would cost DDP an extra traversal of the graph per step to look for unused ones.
        ddp_find_unused_parameters=False,
        use_cpu=not torch.cuda.is_available(),
    )


def save_result(model: torch.nn.Module, method: Method, out: Path, tokenizer, facts: BaseFacts, recipe: Recipe,
                state_dict: dict[str, torch.Tensor] | None = None) -> Path:
    """Write RUN/adapter or RUN/model in the base's dtype (main process only). `state_dict`: the whole
    model's weights gathered from a sharded run (training.distributed.full_state_dict), which the
    in-memory model does not hold."""
    if state_dict is not None:
        state_dict = {k: v.to(facts.dtype) if v.is_floating_point() else v for k, v in state_dict.items()}
    if method.produces == "adapter":
        from adapter_formats.servable import config_problems

        config = model.peft_config["default"]
        # Last guard: a trainer could have changed the config (TRL adds modules_to_save when it
        # clones a chat template that adds tokens).
        problems = config_problems(config.to_dict(), recipe.output.max_lora_rank)
        if problems:
            raise Refused("the trained adapter would not be servable: " + "; ".join(problems))
        # Stored in the base model's dtype, so the server sees one dtype per model.
        for p in model.parameters():
            if p.requires_grad and state_dict is None:
                p.data = p.data.to(facts.dtype)
        if getattr(config, "target_modules", None):
            config.target_modules = sorted(config.target_modules)  # deterministic adapter_config.json
        target = out / "adapter"
        model.save_pretrained(str(target), safe_serialization=True, state_dict=state_dict)
    else:
        target = out / "model"
        if state_dict is None:
            model = model.to(facts.dtype)
        model.save_pretrained(str(target), state_dict=state_dict)
        tokenizer.save_pretrained(str(target))
    return target


def load_trainable_model(recipe: Recipe, method: Method, tokenizer) -> torch.nn.Module:
    """The base in training_dtype (or as the method loads it: QLoRA quantizes), with gradient
    checkpointing if the recipe asks, made trainable by the method (PEFT wrap or unfreezing)."""
    model = method.load_model(recipe) if method.load_model else AutoModelForCausalLM.from_pretrained(
        recipe.model.base, dtype=training_dtype(recipe, method.trains_base_weights))
    if gradient_checkpointing(recipe):
        # Before the PEFT wrap, as the QLoRA recipe does; the Trainer then finds it already on.
        enable_gradient_checkpointing(model)
    return method.prepare(model, recipe, tokenizer)


def train(recipe: Recipe, method: Method) -> dict:
    """Run one recipe end to end; returns the run summary (also written to run.json)."""
    from training.methods.budget import trainer_class

    facts = preflight(recipe, method)
    out = run_dir(recipe)
    out.mkdir(parents=True, exist_ok=True)
    set_seed(recipe.train.seed)
    if not torch.cuda.is_available():
        torch.set_num_threads(cpu_threads(recipe.train.threads))
    tokenizer = AutoTokenizer.from_pretrained(recipe.model.base)
    splits = load_splits(recipe.data, tokenizer, seed=recipe.train.seed)
    log.warning(describe(splits.report))

    # The arguments before the model: under DeepSpeed ZeRO-3 they make from_pretrained load only
    # this process's partition of the weights.
    args = sft_config(recipe, out, splits.validation is not None)
    model = load_trainable_model(recipe, method, tokenizer)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log.warning(f"{method.name}: training {trainable:,} of {total:,} parameters ({100 * trainable / total:.2f}%)")

    trainer_cls, callbacks = trainer_class(recipe.train.max_minutes, recipe.train.lr_scheduler)
    trainer = trainer_cls(model=model, args=args,
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
        "training": {"steps": result.global_step, "threads": torch.get_num_threads(),
                     "train_loss": result.training_loss, "seconds": round(time.monotonic() - started, 1),
                     "resumed_from": resume,
                     "processes": process_count(), "dtype": str(training_dtype(recipe, method.trains_base_weights)).removeprefix("torch.")},
    }
    if splits.validation is not None and len(splits.validation):
        summary["training"]["eval_loss"] = trainer.evaluate()["eval_loss"]  # every process: a collective
    state_dict = full_state_dict(trainer)  # a collective too, under FSDP / DeepSpeed
    artifact = on_main_then_wait(lambda: save_result(trainer.model, method, out, tokenizer, facts, recipe, state_dict))
    del trainer, model, state_dict
    return on_main_then_wait(lambda: finish_run(recipe, method, out, splits, summary, artifact)) or summary


def finish_run(recipe: Recipe, method: Method, out: Path, splits, summary: dict, artifact: Path) -> dict:
    """Evaluate, write run.json, publish: the main process's work after saving."""
    from training.evaluation.held_out import compare
    from training.publish import publish_run

    summary["artifact"] = str(artifact)
    if recipe.output.evaluate and splits.test_examples:
        summary["evaluation"] = compare(
            recipe.model.base, artifact, splits.test_examples[: recipe.output.eval_examples], splits.template,
            metric=recipe.output.metric, max_new_tokens=recipe.output.max_new_tokens)
    (out / "run.json").write_text(json.dumps(summary, indent=2, default=str))
    log.warning(f"{method.name}: wrote {artifact}")
    if recipe.output.publish:
        summary["published"] = str(publish_run(out, adapters_dir=recipe.output.adapters_dir))
    return summary
