"""Multi-LoRA shrink/expand on CPU without per-token weight copies.

vLLM's CPU ops (`vllm/lora/ops/torch_ops/lora_ops.py`) gather each token's adapter matrices
(`lora_weights[token_indices]`, a `[T, rank, hidden]` copy per call) and contract them with
einsum. Here the tokens of a step are grouped by adapter once (`LoRAGroups`, per engine step)
and every layer runs dense matmuls against the stacked weights in place. Two forms, chosen per
step by size (see `DENSE_MAX_ROWS`, measured with `python -m server.lora_ops.bench`):

- dense: one matmul of all tokens against the stacked A of the adapter slots in use
  `[T, H] @ [H, S*r]`, a mask that keeps each token's own adapter block, and one matmul against
  the stacked B `[T, S*r] @ [S*r, O]`. Masked entries are exact zeros, so the sums are those of
  the per-token form; costs S times the flops of the LoRA, but two big calls instead of a loop.
  Best for decode-sized steps.
- grouped (SGMV, as in Punica / S-LoRA): per adapter in use, `x[rows] @ A_l^T @ B_l^T` on its
  tokens only (a slice when they are one run, a gather otherwise). Best for prefill-sized steps.

Tokens with slot -1 (no adapter) are skipped: the LoRA adds nothing to them. Note that vLLM's
reference ops index with -1 too, which in PyTorch selects the *last* slot, so they apply the
adapter in slot `max_loras - 1` to base-model tokens when all slots are in use; the CUDA kernels
skip -1 as we do. With that slot empty (zeros) both give identical results.

Numerics follow the reference: the shrink runs in the buffer's dtype (float32) on upcast inputs,
the expand in the output's dtype (bfloat16 for a bf16 model) on a downcast buffer, then one add
into the output. Only the summation order inside the matmuls differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

DENSE_MAX_ROWS = 4096
"""Use the dense form while tokens x adapter slots spanned <= this (more: grouped form)."""

_CACHE_ATTR = "_adapter_serve_lora_cache"


@dataclass
class LoRAGroups:
    """Which tokens of one engine step use which adapter slot (computed once per step)."""

    indices: torch.Tensor  # [T] long, slot per token, -1 = no adapter
    slots: list[int]  # adapter slots in use, ascending
    rows: dict[int, slice | torch.Tensor]  # slot -> its tokens: one run (slice) or indices [n]
    covers_all: bool  # every token has an adapter
    _mask: dict[torch.dtype, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def from_indices(cls, indices: torch.Tensor) -> LoRAGroups:
        indices = indices.to(torch.long)
        slots_run, counts = torch.unique_consecutive(indices, return_counts=True)
        runs: dict[int, list[tuple[int, int]]] = {}
        start = 0
        for slot, n in zip(slots_run.tolist(), counts.tolist()):
            if slot >= 0:
                runs.setdefault(slot, []).append((start, start + n))
            start += n
        rows: dict[int, slice | torch.Tensor] = {}
        for slot, spans in runs.items():
            if len(spans) == 1:
                rows[slot] = slice(*spans[0])
            else:
                rows[slot] = torch.cat([torch.arange(a, b) for a, b in spans])
        covered = sum(b - a for spans in runs.values() for a, b in spans)
        return cls(indices, sorted(runs), rows, covered == indices.numel())

    @property
    def num_tokens(self) -> int:
        return self.indices.numel()

    @property
    def any(self) -> bool:
        return bool(self.slots)

    @property
    def span(self) -> tuple[int, int]:
        """[lo, hi) range of slots the dense form multiplies against."""
        return self.slots[0], self.slots[-1] + 1

    @property
    def dense(self) -> bool:
        lo, hi = self.span
        return self.num_tokens * (hi - lo) <= DENSE_MAX_ROWS

    def mask(self, dtype: torch.dtype) -> torch.Tensor:
        """[T, S, 1]: 1 where slot lo+s is the token's adapter, else 0 (all 0 for -1)."""
        if dtype not in self._mask:
            lo, hi = self.span
            own = self.indices[:, None] == torch.arange(lo, hi, device=self.indices.device)
            self._mask[dtype] = own.to(dtype)[:, :, None]
        return self._mask[dtype]


def _as_3d(w: torch.Tensor) -> torch.Tensor:
    """vLLM stacks LoRA weights as [slots, 1, out, in]; drop the 1."""
    return w[:, 0] if w.dim() == 4 else w


def _cached(w: torch.Tensor, kind: str, dtype: torch.dtype, make) -> torch.Tensor:
    """A derived copy of a stacked weight, rebuilt when the weight changes.

    vLLM writes adapters into the stacked tensors in place (set_lora / reset_lora), which bumps
    the tensor's version counter; the copy is keyed on it. The copy lives on the tensor object.
    """
    cache = getattr(w, _CACHE_ATTR, None)
    if cache is None:
        cache = {}
        setattr(w, _CACHE_ATTR, cache)
    key = (kind, dtype)
    hit = cache.get(key)
    if hit is not None and hit[0] == w._version:
        return hit[1]
    value = make()
    cache[key] = (w._version, value)
    return value


def stacked_a(a_stacked: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[slots, r, H] in the shrink's compute dtype, contiguous."""
    return _cached(a_stacked, "a", dtype, lambda: _as_3d(a_stacked).to(dtype).contiguous())


def stacked_b(b_stacked: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[slots * r, O] in the expand's compute dtype: B_l^T of each slot, one under the other."""
    def make() -> torch.Tensor:
        b = _as_3d(b_stacked)  # [slots, O, r]
        return b.transpose(1, 2).to(dtype).reshape(b.shape[0] * b.shape[2], b.shape[1]).contiguous()
    return _cached(b_stacked, "b", dtype, make)


def _rows(t: torch.Tensor, rows: slice | torch.Tensor) -> torch.Tensor:
    return t[rows] if isinstance(rows, slice) else t.index_select(0, rows)


def _put(out: torch.Tensor, rows: slice | torch.Tensor, value: torch.Tensor, add: bool) -> None:
    if isinstance(rows, slice):
        if add:
            out[rows] += value
        else:
            out[rows] = value
    elif add:
        out.index_add_(0, rows, value)  # each token has one adapter: one add per element
    else:
        out.index_copy_(0, rows, value)


def shrink(out: torch.Tensor, x: torch.Tensor, a_stacked: torch.Tensor, groups: LoRAGroups,
           scale: float) -> None:
    """out[t, :r] = scale * x[t] @ A[slot(t)]^T, and 0 for tokens without adapter.

    out [T, >=r] (float32 in vLLM), x [T, H], a_stacked [slots, (1,) r, H]."""
    dtype = out.dtype
    a = stacked_a(a_stacked, dtype)  # [slots, r, H]
    r = a.shape[1]
    x = x.to(dtype)
    if not groups.any:
        out[:, :r] = 0
        return
    if groups.dense:
        lo, hi = groups.span
        wide = x @ a[lo:hi].reshape(-1, a.shape[2]).T  # [T, S*r]
        wide = wide.view(x.shape[0], hi - lo, r).mul_(groups.mask(dtype)).sum(1)  # [T, r]
        out[:, :r] = wide.mul_(scale)
        return
    if not groups.covers_all:
        out[:, :r] = 0
    for slot in groups.slots:
        rows = groups.rows[slot]
        _put(out[:, :r], rows, (_rows(x, rows) @ a[slot].T).mul_(scale), add=False)


def expand(out: torch.Tensor, buf: torch.Tensor, b_stacked: torch.Tensor, groups: LoRAGroups,
           offset: int, size: int, add_inputs: bool) -> None:
    """out[t, offset:offset+size] (+)= buf[t] @ B[slot(t)]^T; tokens without adapter add 0.

    out [T, >=offset+size], buf [T, r], b_stacked [slots, (1,) size, r]."""
    dtype = out.dtype
    b = stacked_b(b_stacked, dtype)  # [slots*r, size]
    r = b.shape[0] // _as_3d(b_stacked).shape[0]
    target = out[:, offset:offset + size]
    buf = buf[:, :r].to(dtype)
    if not groups.any:
        if not add_inputs:
            target.zero_()
        return
    if groups.dense:
        lo, hi = groups.span
        # Each token's buffer in its own slot's block, zeros elsewhere: [T, S*r].
        wide = (buf[:, None, :] * groups.mask(dtype)).view(buf.shape[0], -1)
        delta = wide @ b[lo * r:hi * r]
        if add_inputs:
            target += delta
        else:
            target.copy_(delta)
        return
    if not add_inputs and not groups.covers_all:
        target.zero_()
    for slot in groups.slots:
        rows = groups.rows[slot]
        _put(target, rows, _rows(buf, rows) @ b[slot * r:(slot + 1) * r], add=add_inputs)


def lora_linear(y: torch.Tensor, x: torch.Tensor, a_stacked: tuple[torch.Tensor, ...],
                b_stacked: tuple[torch.Tensor, ...], scale: float, output_slices: tuple[int, ...],
                groups: LoRAGroups, buffer_dtype: torch.dtype = torch.float32) -> None:
    """y[:, slice i] += (scale * x @ A_i[slot]^T) @ B_i[slot]^T for each slice i, in place.

    What vLLM's `add_lora_linear` computes (float32 buffer between shrink and expand), fused:
    the dense form keeps the wide [T, S*r] shrink result and masks it once per slice instead of
    reducing it to [T, r] and spreading it out again."""
    if not groups.any:
        return
    x = x.view(-1, x.shape[-1])
    y2 = y.view(-1, y.shape[-1])
    offset = 0
    if groups.dense:
        lo, hi = groups.span
        x32 = x.to(buffer_dtype)
        mask = groups.mask(buffer_dtype)
        for a_st, b_st, size in zip(a_stacked, b_stacked, output_slices):
            a = stacked_a(a_st, buffer_dtype)
            b = stacked_b(b_st, y.dtype)
            r = a.shape[1]
            wide = x32 @ a[lo:hi].reshape(-1, a.shape[2]).T  # [T, S*r]
            # scale * (x @ A) as the reference rounds it, then only the token's own block kept.
            wide = wide.mul_(scale).view(x.shape[0], hi - lo, r).mul_(mask)
            y2[:, offset:offset + size] += wide.view(x.shape[0], -1).to(y.dtype) @ b[lo * r:hi * r]
            offset += size
        return
    x_rows = {slot: _rows(x, groups.rows[slot]).to(buffer_dtype) for slot in groups.slots}
    for a_st, b_st, size in zip(a_stacked, b_stacked, output_slices):
        a = stacked_a(a_st, buffer_dtype)
        b = stacked_b(b_st, y.dtype)
        r = a.shape[1]
        target = y2[:, offset:offset + size]
        for slot in groups.slots:
            buf = (x_rows[slot] @ a[slot].T).mul_(scale)  # [n, r] float32
            _put(target, groups.rows[slot], buf.to(y.dtype) @ b[slot * r:(slot + 1) * r], add=True)
        offset += size
