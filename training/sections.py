"""Recipe sections shared by every training method: model, train, output."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# training.evaluation.held_out.METRICS: the task metrics a recipe or `eval` can name.
Metric = Literal["exact_match", "accuracy", "rouge_l", "json_match"]


@dataclass
class ModelConfig:
    """The base model to fine-tune."""

    base: str = ""
    """Base model directory (config.json, safetensors weights, tokenizer); the server's --model."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Dtype the base weights are loaded in for training. auto: float32 where base weights train
    (full, selective, classifier heads and layers: float32 master copies, bf16 only as autocast;
    frozen weights written back bit-identical), else bfloat16 where bf16 math is native (a CUDA
    GPU, an AVX-512 CPU) and float32 elsewhere (AVX2-only CPUs emulate bf16). A dtype narrower
    than the checkpoint's is refused for methods that write a model directory. Adapters and
    models are saved in the base's own dtype."""


@dataclass
class TrainConfig:
    """Optimisation, logging and checkpoints (passed on to TRL's SFTConfig)."""

    output_dir: str = ""
    """Run directory: checkpoints, TensorBoard logs, the final adapter/model and run.json (default: runs/NAME)."""
    seed: int = 0
    """Seed of initialisation, data order and splits: the same recipe gives the same adapter."""
    epochs: float = 3.0
    """Passes over the training set (ignored when max_steps > 0)."""
    max_steps: int = -1
    """Stop after this many optimizer steps (-1: use epochs)."""
    batch_size: int = 8
    """Examples per step (per device)."""
    gradient_accumulation: int = 1
    """Steps whose gradients are summed before an update (effective batch = batch_size * this)."""
    learning_rate: float = 2e-4
    """Peak learning rate."""
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    """Learning-rate schedule after warm-up."""
    warmup: float = 0.03
    """Warm-up: a fraction of all steps if below 1, else a number of steps."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""
    bf16: bool | None = None
    """bfloat16 autocast (mixed precision): matmuls in bf16, trained weights keep their dtype; ~2x
    faster on CPUs with AVX-512 bf16. None: on where bf16 math is native (a CUDA GPU, an AVX-512 CPU)."""
    gradient_checkpointing: bool | None = None
    """Recompute activations in the backward pass instead of storing them: much less memory for
    ~1.3x the time (non-reentrant, with input gradients for PEFT). None: on for qlora, off otherwise."""
    logging_steps: int = 10
    """Log loss and learning rate (console + TensorBoard) every N steps."""
    eval_steps: int = 0
    """Validation loss every N steps (0: only at the end)."""
    save_steps: int = 200
    """Checkpoint every N steps (the last 2 are kept) so `--resume` can continue."""
    max_minutes: float = 0.0
    """Stop training after this many minutes even before max_steps (0: no limit); the steps reached
    are recorded. Keeps a build's time bounded on a busy machine, at the cost of reproducibility."""
    threads: int = 0
    """CPU threads for torch (0: auto, the cores not already busy, at least 1)."""
    resume: bool = False
    """Continue from the newest checkpoint in output_dir instead of starting over."""
    progress: bool = True
    """Show progress bars."""


@dataclass
class OutputConfig:
    """Naming, server compatibility, evaluation after training and publishing."""

    name: str = ""
    """Adapter (or model) name: the `model` field clients send; also the default run directory runs/NAME."""
    publish: bool = False
    """After training, publish the adapter into adapters_dir/NAME (atomically, with a manifest)."""
    adapters_dir: str = "adapters"
    """The server's --adapters directory."""
    max_lora_rank: int = 16
    """The server's --max-lora-rank: recipes with a higher rank are refused before training."""
    evaluate: bool = True
    """After training, score base vs trained on the held-out test split (exact match, perplexity)."""
    metric: Metric = "exact_match"
    """Task metric for evaluation (json_match: answers compared as parsed JSON)."""
    eval_examples: int = 200
    """Evaluate on at most this many held-out examples."""
    max_new_tokens: int = 32
    """Generation length for evaluation."""

    def validate(self) -> None:
        from adapter_formats.paths import is_valid_name

        if self.name and not is_valid_name(self.name):
            raise ValueError(f"output.name {self.name!r}: use letters, digits, '.', '_', '-' (no leading dot)")
