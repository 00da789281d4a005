"""A small sequence classifier: a tiny base model's backbone with a seeded `score` head.

Saved as `LlamaForSequenceClassification` (config with `num_labels` and `id2label`), which
vLLM's pooling runner serves as a classifier (`--runner pooling`, `--convert auto` resolves to
`classify`) and transformers loads with `AutoModelForSequenceClassification`. The backbone is
the base model's, so LoRA adapters built for the base fit it too.

Usage:
    from training.tiny.classifier import build_classifier_model
    build_classifier_model("/tmp/tiny/base", "/tmp/tiny/classifier", labels=("neg", "neu", "pos"))
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoTokenizer, LlamaForSequenceClassification

from training.tiny.adapters import load_base


@torch.no_grad()
def build_classifier_model(base_dir: str | Path, out_dir: str | Path, *,
                           labels: Sequence[str] = ("negative", "neutral", "positive"),
                           seed: int = 0, init_std: float = 0.1) -> Path:
    """Save the classifier into `out_dir`; return it. `score` is [len(labels), hidden], drawn
    N(0, init_std²): over unit-RMS hidden states the logits spread by ~init_std * sqrt(hidden),
    so the classes' probabilities differ visibly from input to input."""
    base = load_base(base_dir)
    config = base.config.to_dict()
    config.update(architectures=["LlamaForSequenceClassification"],
                  id2label=dict(enumerate(labels)),
                  label2id={label: i for i, label in enumerate(labels)})
    model = LlamaForSequenceClassification(type(base.config).from_dict(config))
    model.model.load_state_dict(base.model.state_dict())
    generator = torch.Generator().manual_seed(seed)
    model.score.weight.copy_(torch.randn(model.score.weight.shape, generator=generator) * init_std)
    model = model.to(base.dtype).eval()
    out = Path(out_dir)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(str(base_dir)).save_pretrained(out)
    return out
