"""What trains in each `classifier.mode`, and the recipes refused before any training.

    head         fine-tuning I: only the `score` head [num_labels, hidden]; the backbone is frozen
    last_layers  fine-tuning I: the head + the last `classifier.layers` decoder layers + the final norm
    full         fine-tuning II: every weight
    lora         LoRA on the backbone's linear layers (ΔW = alpha/r · B @ A), the backbone frozen:
                 (a) on a causal-LM base the new head trains with it (PEFT modules_to_save), so the
                     adapter cannot be served per request and is merged into a model directory;
                 (b) on a base that is already a classifier for the data's labels the head stays
                     frozen: a plain LoRA of the backbone, which the pooling server serves per request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from peft import LoraConfig, TaskType, get_peft_model
from transformers import AutoConfig, PreTrainedModel

from adapter_formats.servable import check_targets
from training.recipe import Recipe
from training.methods.common import BaseFacts
from training.methods.lora import LoraOptions, refuse_lora


@dataclass
class ClassifierOptions:
    """Which weights of the sequence classifier train."""

    mode: Literal["head", "last_layers", "full", "lora"] = "head"
    """head: only the new `score` head (fine-tuning I); last_layers: the head + the last `layers`
    decoder layers + the final norm (fine-tuning I); full: every weight (fine-tuning II); lora:
    LoRA on the backbone's linear layers (see the `lora` section), plus the head on a causal-LM base."""
    layers: int = 1
    """Decoder layers, counted from the top, that train in last_layers mode."""

    def validate(self) -> None:
        if self.layers < 1:
            raise ValueError("classifier.layers must be at least 1")


def classifier_labels(base: str | Path) -> list[str] | None:
    """The labels (in id order) of a base that is already a sequence classifier; None for any other model."""
    config = AutoConfig.from_pretrained(base)
    if not any(a.endswith("ForSequenceClassification") for a in config.architectures or ()):
        return None
    return [config.id2label[i] for i in range(config.num_labels)]


def refuse_classifier(recipe: Recipe, facts: BaseFacts, labels: Sequence[str]) -> list[str]:
    """Reasons this recipe cannot run or cannot give what it promises (empty: go ahead)."""
    opts, reasons = recipe.classifier, []
    existing = classifier_labels(facts.path)
    if existing is not None and existing != list(labels):
        reasons.append(f"model.base is a classifier for labels {existing} but the data's labels are {list(labels)}; "
                       "start from its causal-LM base for a new head, or set data.labels to the base's labels")
    if opts.mode == "last_layers" and opts.layers > facts.num_layers:
        reasons.append(f"classifier.layers={opts.layers} but the model has {facts.num_layers} layers")
    if opts.mode == "lora" and existing is not None:
        # (b): the adapter is what gets served, so it must pass the server's checks.
        reasons += refuse_lora(recipe, facts)
        if "score" in recipe.lora.target_modules:
            reasons.append("lora.target_modules names the `score` head; on a classifier base it stays frozen")
    elif opts.mode == "lora":
        # (a): merged into a model directory, so only the targets need to exist as linear layers.
        reasons += check_targets(recipe.lora.target_modules, facts.linear_modules)
        if recipe.output.publish:
            reasons.append("LoRA with a new classification head is not servable per request (the head would be "
                           "modules_to_save); it is merged into RUN/model. For a publishable adapter train mode "
                           "`head` first, then mode `lora` with that RUN/model as model.base")
    return reasons


def classifier_lora(opts: LoraOptions, new_head: bool) -> LoraConfig:
    """A new head trains in full beside the LoRA: TaskType.SEQ_CLS makes PEFT add `score` to
    modules_to_save. On a classifier base there is no task type: PEFT then only injects the LoRA
    layers (as tests/oracle.py class_probs loads such an adapter) and every other weight stays frozen."""
    return LoraConfig(task_type=TaskType.SEQ_CLS if new_head else None, r=opts.rank, lora_alpha=opts.alpha,
                      lora_dropout=opts.dropout, target_modules=list(opts.target_modules), use_dora=opts.use_dora,
                      modules_to_save=list(opts.modules_to_save) or None, bias=opts.bias)


def make_trainable(model: PreTrainedModel, recipe: Recipe, new_head: bool):
    """Freeze / unfreeze per classifier.mode; lora returns the PEFT-wrapped model."""
    mode = recipe.classifier.mode
    if mode == "lora":
        return get_peft_model(model, classifier_lora(recipe.lora, new_head))
    model.requires_grad_(mode == "full")
    if mode == "last_layers":
        backbone = model.base_model  # LlamaModel: embed_tokens, layers, norm
        for part in (*backbone.layers[-recipe.classifier.layers:], backbone.norm):
            part.requires_grad_(True)
    model.score.requires_grad_(True)
    return model
