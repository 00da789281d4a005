"""vLLM's CPU punica wrapper with the grouped ops of `grouped.py` for linear layers.

`PunicaWrapperCPU` keeps the per-step LoRA mapping; this subclass also groups the step's tokens
by adapter slot once (`update_metadata`) and serves `add_lora_linear` / `add_shrink` /
`add_expand` from it. Everything else (embedding, logits, full-linear heads) stays vLLM's.

Prompt log-probabilities (`echo` + `logprobs`; vLLM's `prompt_logprobs`): vLLM computes them by
calling the model's `compute_logits` on each request's slice of the step's hidden states, while
the lm_head LoRA reads the sampler's mapping, one row per request: with LoRA enabled this crashed
the engine (vLLM #29955, #16668) or dropped an lm_head adapter's delta (#51594). The model
runner's method is wrapped (`scoring_prompts`) so that `add_lora_logits` finds which of the
step's tokens a slice holds and applies each token's own adapter.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from vllm.lora.punica_wrapper.punica_cpu import PunicaWrapperCPU

from server.in_engine.lora_ops import op
from server.in_engine.lora_ops.grouped import LoRAGroups, expand, lora_linear, shrink
from server.vllm_patches import mark

# The step's hidden states while the model runner computes prompt log-probabilities from slices
# of them (one worker process, one model runner, one step at a time).
_scored_steps: list[torch.Tensor] = []


def scoring_prompts(original):
    """vLLM's `_get_prompt_logprobs_dict(self, hidden_states, num_scheduled_tokens)`, with the
    step's hidden states known to `add_lora_logits` while it runs."""
    def _get_prompt_logprobs_dict(self, hidden_states, num_scheduled_tokens):
        with _scoring(hidden_states):
            return original(self, hidden_states, num_scheduled_tokens)

    return mark("prompt-logprobs-lora-rows", _get_prompt_logprobs_dict, original)


@contextlib.contextmanager
def _scoring(hidden_states: torch.Tensor):
    _scored_steps.append(hidden_states)
    try:
        yield
    finally:
        _scored_steps.pop()


def step_rows(x: torch.Tensor) -> slice | None:
    """Which of the step's token rows `x` (2-D) is a view of, while prompts are scored."""
    if not _scored_steps:
        return None
    step = _scored_steps[-1].view(-1, x.shape[-1])
    row_bytes = step.stride(0) * step.element_size()
    offset = x.data_ptr() - step.data_ptr()
    if x.stride() != step.stride() or offset < 0 or offset % row_bytes:
        return None
    start = offset // row_bytes
    return slice(start, start + x.shape[0]) if start + x.shape[0] <= step.shape[0] else None


class GroupedPunicaWrapperCPU(PunicaWrapperCPU):
    groups: LoRAGroups | None = None  # the step's tokens (linear layers)
    sampler_groups: LoRAGroups | None = None  # the step's sampled rows (lm_head)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        op.bind(self)

    def update_metadata(self, mapping, lora_index_to_id, max_loras, vocab_size, **kwargs) -> None:
        super().update_metadata(mapping, lora_index_to_id, max_loras, vocab_size, **kwargs)
        self.groups = LoRAGroups.from_indices(self.token_lora_indices)
        self.sampler_groups = LoRAGroups.from_indices(self.sampler_indices)

    def _groups_for(self, num_tokens: int) -> LoRAGroups | None:
        # Inputs whose rows are not the step's tokens (none seen in vLLM 0.32): vLLM's own path.
        groups = self.groups
        return groups if groups is not None and groups.num_tokens == num_tokens else None

    def add_lora_linear(self, y: torch.Tensor, x: torch.Tensor, lora_a_stacked: tuple[torch.Tensor, ...],
                        lora_b_stacked: tuple[torch.Tensor, ...], scale: float,
                        output_slices: tuple[int, ...], *, buffer=None, **kwargs: Any) -> None:
        if buffer is not None or kwargs:
            return super().add_lora_linear(y, x, lora_a_stacked, lora_b_stacked, scale, output_slices,
                                           buffer=buffer, **kwargs)
        # Through the opaque op: this method is traced when the model is compiled, the op is not.
        op.lora_linear(y, x, list(lora_a_stacked), list(lora_b_stacked), scale, list(output_slices))

    def lora_linear_now(self, y: torch.Tensor, x: torch.Tensor, lora_a_stacked: tuple[torch.Tensor, ...],
                        lora_b_stacked: tuple[torch.Tensor, ...], scale: float,
                        output_slices: tuple[int, ...]) -> None:
        """The op's body: the step's grouping, read now."""
        groups = self._groups_for(x.view(-1, x.shape[-1]).shape[0])
        if groups is None:
            super().add_lora_linear(y, x, lora_a_stacked, lora_b_stacked, scale, output_slices)
        else:
            lora_linear(y, x, lora_a_stacked, lora_b_stacked, scale, output_slices, groups)

    def add_lora_logits(self, y: torch.Tensor, x: torch.Tensor, lora_a_stacked: torch.Tensor,
                        lora_b_stacked: torch.Tensor, scale, *, buffer=None, **kwargs: Any) -> None:
        # Every LoRA server wraps lm_head, so this runs each step: with no adapter among the
        # sampled rows it is a no-op here (vLLM's ops compute it anyway, for the last slot).
        x2 = x.view(-1, x.shape[-1])
        groups = self.sampler_groups
        rows = step_rows(x2) if buffer is None and not kwargs else None
        if rows is not None:  # a request's prompt tokens, scored: each token's own adapter
            groups = LoRAGroups.from_indices(self.token_lora_indices[rows])
        if buffer is not None or kwargs or groups is None or groups.num_tokens != x2.shape[0]:
            return super().add_lora_logits(y, x, lora_a_stacked, lora_b_stacked, scale, buffer=buffer, **kwargs)
        lora_linear(y, x2, (lora_a_stacked,), (lora_b_stacked,), scale, (lora_b_stacked.shape[-2],), groups)

    def add_shrink(self, y, x: torch.Tensor, lora_a_stacked: tuple[torch.Tensor, ...], scale: float,
                   **kwargs: Any) -> None:
        x = x.view(-1, x.shape[-1])
        groups = self._groups_for(x.shape[0])
        if groups is None:
            return super().add_shrink(y, x, lora_a_stacked, scale, **kwargs)
        if not groups.any:
            return
        for out, a in zip(y, lora_a_stacked):
            shrink(out.view(-1, out.shape[-1]), x, a, groups, scale)

    def add_expand(self, y: torch.Tensor, x, lora_b_stacked: tuple[torch.Tensor, ...],
                   output_slices: tuple[int, ...], offset_start: int = 0, add_inputs=True,
                   **kwargs: Any) -> None:
        y2 = y.view(-1, y.shape[-1])
        groups = self._groups_for(y2.shape[0])
        if groups is None:
            return super().add_expand(y, x, lora_b_stacked, output_slices, offset_start, add_inputs, **kwargs)
        if not groups.any and add_inputs:
            return
        offset = offset_start
        for buf, b, size in zip(x, lora_b_stacked, output_slices):
            expand(y2, buf, b, groups, offset, size, add_inputs)
            offset += size
