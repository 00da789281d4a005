"""What an adapter must fit: the base model's linear layer shapes and embedding size.

Read from the model's config alone by instantiating it on the meta device (no weights are
loaded), so it works for any architecture transformers knows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from adapter_formats.manifest import base_model_identity, quantized_from_identity


@dataclass(frozen=True)
class BaseModelInfo:
    path: Path
    hidden_size: int
    vocab_size: int
    max_position_embeddings: int | None
    linear_shapes: dict[str, tuple[int, int]]
    """Module path (e.g. `model.layers.0.self_attn.q_proj`) -> (in_features, out_features)."""
    identity: str
    """Content checksum (see `manifest.base_model_identity`); adapters' manifests must match it,
    or `quantized_from`."""
    quantized_from: str | None = None
    """For a model made by `training quantize`: the identity of the model it was quantized from."""

    @property
    def accepted_identities(self) -> tuple[str, ...]:
        """Base identities an adapter's manifest may name to be served on this model."""
        return (self.identity,) if self.quantized_from is None else (self.identity, self.quantized_from)

    @classmethod
    def load(cls, path: str | Path, trust_remote_code: bool = False) -> "BaseModelInfo":
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
        shapes = {
            name: (module.in_features, module.out_features)
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear)
        }
        text_config = config.get_text_config()
        return cls(
            path=Path(path).resolve(),
            hidden_size=text_config.hidden_size,
            vocab_size=text_config.vocab_size,
            max_position_embeddings=getattr(text_config, "max_position_embeddings", None),
            linear_shapes=shapes,
            identity=base_model_identity(path),
            quantized_from=quantized_from_identity(path),
        )
