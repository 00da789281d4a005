"""Contrastive embedding adapter: a LoRA on the base's backbone, trained with InfoNCE over in-batch negatives.

    python -m training contrastive --config training/recipes/contrastive-demo.yaml [--key value ...] [--publish]

The embedding is exactly the served one (`python -m server --runner pooling --convert embed`):
the last token's final hidden state, L2-normalised (training.embeddings.retrieval.embed). Each
step embeds a batch of B (anchor, positive[, negative]) rows; anchor i must pick its own positive
among the B positives of the batch (the other rows' positives are its negatives) plus every hard
negative of the batch, by softmax over cosine / temperature. Then the test split's anchors
retrieve among all test positives, base and adapter side by side (recall@1/5/10, MRR).

Run directory (`python -m training publish --run RUN` reads it like any other run):
    RUN/adapter/       the LoRA (safetensors; base_model.model.* keys the server validates)
    RUN/history.jsonl  loss and learning rate per step
    RUN/run.json       method, runner pooling / task embed, data, hyper-parameters, retrieval metrics

One process: the in-batch negatives are the batch's own rows (gathering them across processes
is not implemented, so several processes are refused).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from peft import TaskType, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

from training.recipe import Recipe
from training.data import describe
from training.devices import cpu_threads, device, training_dtype
from training.distributed import process_count
from training.embeddings.data import Pair, PairDataConfig, load_pairs
from training.embeddings.retrieval import compare, embed, table
from training.methods.budget import Clock, budget_schedule
from training.methods.common import BaseFacts, Method, adapter_name, preflight, run_dir
from training.methods.lora import LoraOptions, lora_config, refuse_lora
from training.sections import ModelConfig, OutputConfig
from training.templates import resolve_template

log = logging.getLogger("training")


@dataclass
class ContrastiveTrainConfig:
    """Optimisation: steps, batch, learning rate, time budget, threads."""

    output_dir: str = ""
    """Run directory: the adapter, history.jsonl and run.json (default: runs/NAME)."""
    seed: int = 0
    """Seed of the LoRA initialisation, the splits and the batch order: the same recipe gives the same adapter."""
    max_steps: int = 300
    """Optimizer steps (the training rows are reshuffled each pass)."""
    batch_size: int = 32
    """Rows per step: each anchor is scored against all batch_size positives (and the batch's hard
    negatives), so a larger batch is a harder task with more negatives."""
    learning_rate: float = 1e-3
    """Peak AdamW learning rate."""
    lr_scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    """Learning-rate schedule after warm-up."""
    warmup: float = 0.05
    """Warm-up: a fraction of max_steps if below 1, else a number of steps."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""
    logging_steps: int = 25
    """Log the mean loss and the learning rate every N steps."""
    max_minutes: float = 0.0
    """Stop after this many minutes even before max_steps (0: no limit); the learning-rate schedule then
    follows the clock too (training/methods/budget.py), and the steps reached are recorded."""
    threads: int = 0
    """CPU threads for torch (0: auto, the cores not already busy, at least 1)."""

    def validate(self) -> None:
        if self.max_steps < 1:
            raise ValueError("train.max_steps must be at least 1")
        if self.batch_size < 2:
            raise ValueError("train.batch_size must be at least 2: a lone anchor has no in-batch negatives")


@dataclass
class ContrastiveOptions:
    """The InfoNCE loss."""

    temperature: float = 0.05
    """τ of softmax(cosine / τ): lower is sharper (cosines lie in [-1, 1], so 0.05 spreads logits over [-20, 20])."""
    hard_negatives: bool = True
    """Add the rows' `negative` texts to each batch's candidates (rows without one add none)."""

    def validate(self) -> None:
        if self.temperature <= 0:
            raise ValueError("contrastive.temperature must be above 0")


SECTIONS = {"model": ModelConfig, "data": PairDataConfig, "train": ContrastiveTrainConfig, "lora": LoraOptions,
            "contrastive": ContrastiveOptions, "output": OutputConfig}


def refuse_contrastive(recipe: Recipe, facts: BaseFacts) -> list[str]:
    """The LoRA checks of `lora`, plus what an embedding adapter cannot use."""
    reasons = refuse_lora(recipe, facts)
    if any(t == "lm_head" or t.endswith(".lm_head") for t in recipe.lora.target_modules):
        reasons.append("target module lm_head is not part of the embedding (the final hidden state, before "
                       "the LM head): it would get no gradient, and a pooling server has no LM head to adapt")
    if process_count() > 1:
        reasons.append(f"contrastive trains on one process (in-batch negatives are not gathered across "
                       f"processes); launched on {process_count()}")
    return reasons


METHOD = Method(name="contrastive", help="embedding LoRA (InfoNCE, in-batch negatives) for --runner pooling",
                produces="adapter", options={"lora": LoraOptions}, refuse=refuse_contrastive)


def embedding_lora(opts: LoraOptions):
    """`lora`'s PEFT config, for feature extraction: PEFT then only injects the LoRA layers (no
    generation wrapper), and the saved keys are the same base_model.model.* the server validates."""
    config = lora_config(opts)
    config.task_type = TaskType.FEATURE_EXTRACTION
    return config


def info_nce(anchors: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor | None = None,
             temperature: float = 0.05) -> torch.Tensor:
    """Mean over anchors of -log softmax(cosine / τ) at the anchor's own positive.

    anchors, positives [B, H] and negatives [M, H], L2-normalised; anchor i's candidates are the
    B positives (its own at column i) and the M hard negatives. Not symmetric (no positive ->
    anchor term): the task trained is the one evaluated and served, a query finding its match
    among candidates, and the hard negatives are candidates for the anchors only; a symmetric
    loss would also train positives to find anchors, a direction nothing here uses."""
    candidates = positives if negatives is None else torch.cat([positives, negatives])  # [B + M, H]
    logits = anchors @ candidates.T / temperature  # [B, B + M]
    return torch.nn.functional.cross_entropy(logits, torch.arange(len(anchors), device=logits.device))


def batch_loss(model: torch.nn.Module, pairs: list[Pair], pad_id: int, opts: ContrastiveOptions) -> torch.Tensor:
    """InfoNCE of one batch of rows; anchors, positives and negatives are embedded in one forward pass."""
    negatives = [p.negative for p in pairs if opts.hard_negatives and p.negative is not None]
    b = len(pairs)
    vectors = embed(model, [p.anchor for p in pairs] + [p.positive for p in pairs] + negatives, pad_id)  # [2B + M, H]
    return info_nce(vectors[:b], vectors[b:2 * b], vectors[2 * b:], opts.temperature)


def batches(n: int, size: int, seed: int) -> Iterator[list[int]]:
    """Row indices, `size` at a time, reshuffled every pass; a pass's short last batch is dropped
    (fewer in-batch negatives make an easier, incomparable loss)."""
    generator = torch.Generator().manual_seed(seed)
    size = min(size, n)
    while True:
        order = torch.randperm(n, generator=generator).tolist()
        yield from (order[i:i + size] for i in range(0, n - size + 1, size))


@torch.no_grad()
def mean_loss(model: torch.nn.Module, pairs: list[Pair], pad_id: int, opts: ContrastiveOptions,
              batch_size: int) -> float | None:
    """Mean in-batch InfoNCE over consecutive batches of `pairs` (eval mode); None without a batch of 2."""
    model.eval()
    losses = [batch_loss(model, pairs[i:i + batch_size], pad_id, opts).item()
              for i in range(0, len(pairs), batch_size) if len(pairs[i:i + batch_size]) >= 2]
    model.train()
    return sum(losses) / len(losses) if losses else None


def train_contrastive(recipe: Recipe) -> dict:
    """Run one recipe end to end; returns the run summary (also written to run.json)."""
    from training.publish import publish_run
    from training.rlhf.common import save_policy

    facts = preflight(recipe, METHOD)
    out = run_dir(recipe)
    out.mkdir(parents=True, exist_ok=True)
    t = recipe.train
    set_seed(t.seed)
    if not torch.cuda.is_available():
        torch.set_num_threads(cpu_threads(t.threads))
    tokenizer = AutoTokenizer.from_pretrained(recipe.model.base)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0  # masked: any id does
    data = load_pairs(recipe.data, tokenizer, seed=t.seed)
    log.warning(describe(data.report))

    base = AutoModelForCausalLM.from_pretrained(recipe.model.base, dtype=training_dtype(recipe))
    model = get_peft_model(base, embedding_lora(recipe.lora)).to(device())
    params = [p for p in model.parameters() if p.requires_grad]
    trainable, total = sum(p.numel() for p in params), sum(p.numel() for p in model.parameters())
    log.warning(f"contrastive: training {trainable:,} of {total:,} parameters ({100 * trainable / total:.2f}%)")

    optimizer = torch.optim.AdamW(params, lr=t.learning_rate, weight_decay=t.weight_decay)
    warmup = int(t.warmup) if t.warmup >= 1 else math.ceil(t.warmup * t.max_steps)
    # Without a time budget the clock never runs out (infinite minutes): the schedule is then the
    # plain one over max_steps, with the same warm-up either way.
    clock = Clock(t.max_minutes if t.max_minutes > 0 else math.inf)
    schedule = budget_schedule(optimizer, t.lr_scheduler, warmup, t.max_steps, clock)
    order = batches(len(data.train), t.batch_size, t.seed)
    history, window = [], []
    model.train()
    started = time.monotonic()
    clock.restart()
    for step in range(1, t.max_steps + 1):
        loss = batch_loss(model, [data.train[i] for i in next(order)], pad_id, recipe.contrastive)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"contrastive: loss is {loss.item()} at step {step}; lower the learning rate "
                                     "or raise the temperature")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, t.max_grad_norm)
        history.append({"step": step, "loss": round(loss.item(), 5), "learning_rate": schedule.get_last_lr()[0]})
        window.append(loss.item())
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if step == 1 or step % max(1, t.logging_steps) == 0 or step == t.max_steps:
            log.warning(f"contrastive {step}/{t.max_steps}: loss {sum(window) / len(window):.4f}  "
                        f"lr {history[-1]['learning_rate']:.2e}")
            window = []
        if clock.fraction() >= 1:
            log.warning(f"time budget reached at step {step} of {t.max_steps}")
            break
    seconds = round(time.monotonic() - started, 1)
    training = {"steps": len(history), "seconds": seconds, "threads": torch.get_num_threads(),
                "dtype": str(training_dtype(recipe)).removeprefix("torch."),
                "trainable_parameters": trainable, "total_parameters": total,
                "first_loss": history[0]["loss"], "final_loss": history[-1]["loss"],
                "eval_loss": mean_loss(model, data.validation, pad_id, recipe.contrastive, t.batch_size)}
    (out / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    artifact = save_policy(model, METHOD, out, tokenizer, facts, recipe)
    del model, base

    evaluation = None
    if recipe.output.evaluate and len(data.test) >= 2:
        evaluation = compare(recipe.model.base, artifact, data.test[: recipe.output.eval_examples], pad_id)
        print(table(evaluation, trainable, seconds))
    summary = {
        "name": adapter_name(recipe),
        "method": METHOD.name,
        "produces": "adapter",
        # What training.publish writes into the manifest: serve it from a `--runner pooling
        # --convert embed` server (adapter_formats/manifest.py refuses it anywhere else).
        "runner": "pooling",
        "task": "embed",
        "base_model": str(facts.path.resolve()),
        # Texts are embedded as given: no template (the server applies none to /v1/embeddings).
        "prompt_template": resolve_template("raw").manifest(),
        "data": {"file": recipe.data.train, **data.report},
        "hyperparameters": recipe.to_dict(),
        "training": training,
        "evaluation": evaluation,
        "artifact": str(artifact),
    }
    (out / "run.json").write_text(json.dumps(summary, indent=2, default=str))
    log.warning(f"contrastive: wrote {artifact}")
    if recipe.output.publish:
        summary["published"] = str(publish_run(out, adapters_dir=recipe.output.adapters_dir))
    return summary
