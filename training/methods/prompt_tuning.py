"""Prompt tuning: learn `num_virtual_tokens` input embeddings put before every prompt (a soft prompt).

    python -m training prompt_tuning --config training/recipes/prompt-tuning-chat.yaml

The saved adapter is one tensor, `prompt_embeddings` [num_virtual_tokens, hidden], which the
server sends to vLLM as prompt embeddings in front of the request's tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

from training.recipe import Recipe
from training.methods.common import BaseFacts, Method


@dataclass
class PromptTuningOptions:
    """Soft prompt shape and initialisation."""

    num_virtual_tokens: int = 16
    """Rows of the soft prompt (each costs one position of the context)."""
    init_text: str | None = None
    """Initialise the rows from this text's token embeddings (repeated/cut to length); else random,
    sized like real token embeddings."""

    def validate(self) -> None:
        if self.num_virtual_tokens < 1:
            raise ValueError("prompt_tuning.num_virtual_tokens must be at least 1")


@torch.no_grad()
def init_prompt(model, opts: PromptTuningOptions, tokenizer, seed: int) -> None:
    """Set the soft prompt's rows: text embeddings, or N(0, std(embeddings)²).

    PEFT's own TEXT init would record a tokenizer path in adapter_config.json (which must then
    exist wherever the adapter is loaded) and its RANDOM init is N(0, 1), far larger than token
    embeddings; so the config says RANDOM and the rows are set here.
    """
    embed = model.get_input_embeddings().weight  # [vocab, hidden]
    n = opts.num_virtual_tokens
    if opts.init_text:
        ids = tokenizer(opts.init_text, add_special_tokens=False).input_ids
        if not ids:
            raise ValueError("prompt_tuning.init_text tokenizes to nothing")
        rows = embed[(ids * math.ceil(n / len(ids)))[:n]].float()
    else:
        generator = torch.Generator().manual_seed(seed)
        rows = torch.randn((n, embed.shape[1]), generator=generator) * embed.float().std()
    model.prompt_encoder["default"].embedding.weight.copy_(rows)


def refuse_prompt_tuning(recipe: Recipe, facts: BaseFacts) -> list[str]:
    if recipe.data.packing or recipe.data.padding_free:
        # PEFT puts the soft prompt once before each row, and drops the position ids that keep
        # examples sharing a row apart; they would attend to each other.
        return ["data.packing / data.padding_free put several examples in one row, but a soft prompt goes before "
                "each row (not each example) and PEFT drops the position ids that keep the examples apart"]
    return []


def prepare_prompt_tuning(model, recipe: Recipe, tokenizer):
    opts = recipe.prompt_tuning
    config = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=opts.num_virtual_tokens,
                                prompt_tuning_init=PromptTuningInit.RANDOM)
    model = get_peft_model(model, config)
    init_prompt(model, opts, tokenizer, recipe.train.seed)
    return model


METHOD = Method(
    name="prompt_tuning",
    help="soft prompt (PEFT prompt tuning): learned embeddings before the prompt",
    produces="adapter",
    options={"prompt_tuning": PromptTuningOptions},
    prepare=prepare_prompt_tuning,
    refuse=refuse_prompt_tuning,
)
