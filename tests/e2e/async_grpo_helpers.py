"""What tests/e2e/test_async_grpo.py hands to TRL's AsyncGRPO: a CPU `flash_attn_varlen_func`,
the tiny tokenizer's response template, the toy task's reward.

A module of its own, with light imports, because AsyncGRPO's rollout worker is a spawned process
that unpickles the reward function (and the tokenizer) by importing the module defining it.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F


def flash_attn_varlen_func(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                           cu_seqlens_q: torch.Tensor, cu_seqlens_k: torch.Tensor,
                           max_seqlen_q: int | None = None, max_seqlen_k: int | None = None, *,
                           softmax_scale: float | None = None, causal: bool = False,
                           window_size: tuple[int, int] = (-1, -1), softcap: float = 0.0,
                           **unsupported) -> torch.Tensor:
    """FlashAttention's variable-length attention, in plain torch (SDPA per segment), for CPU.

    Why it exists: AsyncGRPO's training forward packs its samples into a prefix trie and attends
    with a "tree" attention (trl/experimental/async_grpo/packing.py: `tree_attention`) that calls
    FlashAttention-3's `flash_attn_varlen_func`, downloaded from the Hugging Face hub by the
    `kernels` package (`packing._flash_attn`). That is the GPU path; on this CPU-only, offline
    machine there is neither the hub nor a GPU kernel, so the test swaps in the same math here.

    Semantics as FlashAttention's: `q` (total_q, heads, dim), `k`/`v` (total_k, kv_heads, dim)
    with `heads` a multiple of `kv_heads` (grouped-query attention: query head h reads kv head
    h // (heads // kv_heads)); segment i is the queries `cu_seqlens_q[i]:cu_seqlens_q[i+1]`
    against the keys `cu_seqlens_k[i]:cu_seqlens_k[i+1]`; `causal` aligns the mask to the bottom
    right when a segment has fewer queries than keys (query i sees key j iff j <= i + Lk - Lq,
    which is how a trie segment attends to its whole root-to-segment path), and a query that
    sees no key gets zeros. Returns (total_q, heads, dim) in q's dtype. Sliding windows and soft
    capping are not implemented (no model this test trains uses them): they raise.
    """
    if unsupported or tuple(window_size) != (-1, -1) or softcap:
        raise NotImplementedError(
            f"CPU flash_attn_varlen_func: window_size={window_size}, softcap={softcap}, "
            f"{sorted(unsupported)} are not implemented")
    heads, kv_heads = q.shape[1], k.shape[1]
    if heads % kv_heads or v.shape[1] != kv_heads:
        raise ValueError(f"{heads} query heads cannot share {kv_heads} key/value heads")
    out = q.new_zeros(q.shape[0], heads, v.shape[-1])
    bounds_q, bounds_k = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
    if len(bounds_q) != len(bounds_k):
        raise ValueError("cu_seqlens_q and cu_seqlens_k must hold as many segments")
    for (q0, q1), (k0, k1) in zip(zip(bounds_q, bounds_q[1:]), zip(bounds_k, bounds_k[1:])):
        len_q, len_k = q1 - q0, k1 - k0
        # Bottom-right alignment: the first len_q - len_k queries of a causal segment see no key.
        start = q0 + max(len_q - len_k, 0) if causal else q0
        if start >= q1 or len_k == 0:
            continue
        rows = q1 - start
        mask = None
        if causal:
            mask = torch.ones(rows, len_k, dtype=torch.bool, device=q.device).tril(len_k - rows)
        segment = F.scaled_dot_product_attention(
            q[start:q1].transpose(0, 1), k[k0:k1].transpose(0, 1), v[k0:k1].transpose(0, 1),
            attn_mask=mask, scale=softmax_scale, enable_gqa=heads != kv_heads)
        out[start:q1] = segment.transpose(0, 1)
    return out


CPU_FLASH_ATTN = types.SimpleNamespace(flash_attn_varlen_func=flash_attn_varlen_func)
"""What `packing._flash_attn()` returns on the GPU (a hub kernel module), for the CPU."""


# How TRL's rollout worker reads an answer back into a message (transformers' response parsing):
# TRL knows the templates of the common model families, not the tiny model's
# (training/tiny/tokenizer.py: an answer is `<|assistant|>\n{content}</s>\n`).
RESPONSE_TEMPLATE = {
    "defaults": {"role": "assistant"},
    "start_anchor": "<|assistant|>\n",
    "fields": {"content": {"close_pattern": r"</s>\s*|$", "content": "text"}},
}

ANSWER_TOKENS = 4
"""Longest answer (`max_completion_length`); the tiny random model seldom ends one sooner."""


def digit_reward(completions: list[list[dict]], **kwargs) -> list[float]:
    """The toy task, verifiable from the text: answer with digits. The reward is the number of
    digits in the answer over its length in tokens (1 when every token is a digit). The tiny
    random model starts near 0.03: digits are 13 of its 512 tokens."""
    return [sum(ch.isdigit() for ch in completion[-1]["content"]) / ANSWER_TOKENS
            for completion in completions]
