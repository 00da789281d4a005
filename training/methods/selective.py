"""Selective fine-tuning: train only the last N decoder layers and/or the output layers.

    python -m training selective --config training/recipes/selective-last-layers.yaml

Everything else is frozen (requires_grad=False), so the optimizer never touches it. Like full
fine-tuning, the result is a model directory (only the unfrozen tensors differ from the base).
"""

from __future__ import annotations

from dataclasses import dataclass

from training.recipe import Recipe
from training.methods.common import BaseFacts, Method


@dataclass
class SelectiveOptions:
    """Which parts of the model train."""

    last_layers: int = 1
    """Number of decoder layers, counted from the top, that train (0: none)."""
    output_layers: bool = True
    """Train the output layers too: the final norm and lm_head."""
    embeddings: bool = False
    """Train the input embeddings too."""

    def validate(self) -> None:
        if self.last_layers < 0:
            raise ValueError("selective.last_layers must be >= 0")
        if not (self.last_layers or self.output_layers or self.embeddings):
            raise ValueError("selective: nothing would train (set last_layers, output_layers or embeddings)")


def refuse_selective(recipe: Recipe, facts: BaseFacts) -> list[str]:
    if recipe.selective.last_layers > facts.num_layers:
        return [f"selective.last_layers={recipe.selective.last_layers} but the model has {facts.num_layers} layers"]
    return []


def prepare_selective(model, recipe: Recipe, tokenizer):
    opts = recipe.selective
    model.requires_grad_(False)
    decoder = model.get_decoder()
    parts = list(decoder.layers)[len(decoder.layers) - opts.last_layers:] if opts.last_layers else []
    if opts.output_layers:
        parts += [decoder.norm, model.get_output_embeddings()]
    if opts.embeddings:
        parts.append(model.get_input_embeddings())
    for part in parts:
        part.requires_grad_(True)
    return model


METHOD = Method(
    name="selective",
    help="train only the last N layers and/or the output layers; writes a model directory",
    produces="model",
    trains_base_weights=True,
    options={"selective": SelectiveOptions},
    prepare=prepare_selective,
    refuse=refuse_selective,
)
