"""Soft prompts (PEFT prompt tuning and P-tuning) served through vLLM prompt embeddings.

PEFT saves both as one tensor, `prompt_embeddings` [num_virtual_tokens, hidden], which it puts
in front of the input embeddings. We do the same with vLLM's mixed input form: the request's
token ids with `num_virtual_tokens` placeholder positions in front, a mask saying which positions
are real tokens, and an embeddings tensor whose first rows are the soft prompt (the engine reads
rows only where the mask is False). The engine hashes those rows into its prefix cache, so two
soft prompts never share cached blocks; `server.in_engine.soft_prompt_cache` computes the virtual
tokens' keys and values once per soft prompt and LoRA, also when they fill no whole block.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open

from adapter_formats.servable import SOFT_PROMPT_TYPES, AdapterInvalid, soft_prompt_config_problems
from server.adapters.base_model import BaseModelInfo

_TENSOR = "prompt_embeddings"


class SoftPrompt:
    """One soft prompt, kept as [rows, hidden]: its embeddings, then zeros.

    A request takes a prefix of those rows, which is a view: no per-request allocation or copy
    on the event loop. The zero tail grows (doubling) to the longest prompt seen so far.
    """

    def __init__(self, embeddings: torch.Tensor, max_model_len: int, placeholder_id: int = 0):
        self.num_virtual_tokens = embeddings.shape[0]
        self.max_model_len = max_model_len
        self.placeholder_id = placeholder_id
        self._rows = embeddings
        self._grow(self.num_virtual_tokens + 256)

    def _grow(self, rows: int) -> None:
        rows = min(max(rows, 2 * self._rows.shape[0]), self.max_model_len)
        grown = self._rows.new_zeros(rows, self._rows.shape[1])
        grown[: self.num_virtual_tokens] = self._rows[: self.num_virtual_tokens]
        self._rows = grown

    def engine_input(self, token_ids: list[int]) -> dict:
        v = self.num_virtual_tokens
        if v + len(token_ids) > self._rows.shape[0]:
            self._grow(v + len(token_ids))
        return {
            "prompt_embeds": self._rows[: v + len(token_ids)],
            "prompt_token_ids": [self.placeholder_id] * v + token_ids,
            "prompt_is_token_ids": [False] * v + [True] * len(token_ids),
        }


class SoftPromptLoader:
    SERVABLE = SOFT_PROMPT_TYPES

    def __init__(self, max_model_len: int, dtype: torch.dtype) -> None:
        self.max_model_len = max_model_len
        self.dtype = dtype

    def handles(self, peft_type: str) -> bool:
        return peft_type in (*self.SERVABLE, "PREFIX_TUNING")

    def load(self, config: dict, weights: Path, base: BaseModelInfo) -> SoftPrompt:
        problems = soft_prompt_config_problems(config)
        if problems:
            raise AdapterInvalid("; ".join(problems))
        try:
            with safe_open(weights, framework="pt") as f:
                if _TENSOR not in f.keys():
                    raise AdapterInvalid(f"{weights.name} has no `{_TENSOR}` tensor "
                                         f"(found: {', '.join(sorted(f.keys())) or 'nothing'})")
                embeddings = f.get_tensor(_TENSOR)
        except AdapterInvalid:
            raise
        except Exception as exc:
            raise AdapterInvalid(f"{weights.name} is not a readable safetensors file ({exc})") from exc
        if embeddings.dim() != 2 or embeddings.shape[0] < 1:
            raise AdapterInvalid(f"`{_TENSOR}` must be [num_virtual_tokens, hidden], "
                                 f"got {list(embeddings.shape)}")
        count, hidden = embeddings.shape
        if hidden != base.hidden_size:
            raise AdapterInvalid(f"soft prompt hidden size {hidden} does not match the base "
                                 f"model's hidden size {base.hidden_size}")
        if count >= self.max_model_len:
            raise AdapterInvalid(f"{count} virtual tokens leave no room in the context window "
                                 f"of {self.max_model_len} tokens")
        if not torch.isfinite(embeddings).all():
            raise AdapterInvalid(f"`{_TENSOR}` contains NaN or infinite values")
        return SoftPrompt(embeddings.to(self.dtype), self.max_model_len)
