"""LoRA: low-rank updates ΔW = (alpha / r) · B @ A on chosen linear layers; the base stays frozen.

    python -m training lora --config training/recipes/lora-alpaca.yaml [--rank 8 --publish]
"""

from __future__ import annotations

from dataclasses import dataclass, field

from peft import LoraConfig, TaskType, get_peft_model

from adapter_formats.servable import check_targets, config_problems
from training.recipe import Recipe
from training.methods.common import BaseFacts, Method

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class LoraOptions:
    """LoRA adapter shape."""

    rank: int = 16
    """Rank r of A [r, in] and B [out, r]; the server serves ranks up to its --max-lora-rank."""
    alpha: float = 32.0
    """Scale: ΔW is multiplied by alpha / rank."""
    dropout: float = 0.05
    """Dropout on the LoRA path during training."""
    target_modules: list[str] = field(default_factory=lambda: list(ALL_LINEAR))
    """Linear layers to adapt, by name suffix (q_proj, ..., down_proj) or ["all-linear"]."""
    use_dora: bool = False
    """Weight-decomposed LoRA; refused: the server cannot serve DoRA."""
    modules_to_save: list[str] = field(default_factory=list)
    """Whole modules to train and save; refused: the server cannot serve them."""
    bias: str = "none"
    """Which biases to train (none, all, lora_only); only none is servable."""

    def validate(self) -> None:
        if self.rank < 1:
            raise ValueError("lora.rank must be at least 1")


def lora_config(opts: LoraOptions) -> LoraConfig:
    return LoraConfig(task_type=TaskType.CAUSAL_LM, r=opts.rank, lora_alpha=opts.alpha, lora_dropout=opts.dropout,
                      target_modules=list(opts.target_modules), use_dora=opts.use_dora,
                      modules_to_save=list(opts.modules_to_save) or None, bias=opts.bias)


def refuse_lora(recipe: Recipe, facts: BaseFacts) -> list[str]:
    return (config_problems(lora_config(recipe.lora).to_dict(), recipe.output.max_lora_rank)
            + check_targets(recipe.lora.target_modules, facts.linear_modules))


def prepare_lora(model, recipe: Recipe, tokenizer):
    return get_peft_model(model, lora_config(recipe.lora))


METHOD = Method(
    name="lora",
    help="LoRA adapter (frozen base, low-rank updates of linear layers)",
    produces="adapter",
    options={"lora": LoraOptions},
    prepare=prepare_lora,
    refuse=refuse_lora,
)
