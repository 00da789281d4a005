"""Multi-LoRA shrink/expand on CPU without per-token weight copies.

vLLM's CPU ops (`vllm/lora/ops/torch_ops/lora_ops.py`) gather each token's adapter matrices
(`lora_weights[token_indices]`, a `[T, rank, hidden]` copy per call) and contract them with
einsum. Here the tokens of a step are grouped by adapter once (`LoRAGroups`, per engine step)
and every layer works on the stacked weights in place. Where the C++ kernel could be built
(`server.in_engine.lora_ops.native`, on first use):

- kernel (BGMV): each token against its own adapter's packed weights, minimal flops and no
  matmul call overhead; for every adapter with fewer than `GROUPED_MIN_TOKENS` tokens in the
  step (decode, short prefills);
- grouped (SGMV, as in Punica / S-LoRA) for the others: per adapter, `x[rows] @ A_l^T @ B_l^T`
  on its tokens only (a slice when they are one run, a gather otherwise).

Without the kernel, two torch forms, chosen per step by size (`DENSE_MAX_ROWS`):

- dense: one matmul of all tokens against the stacked A of the adapter slots in use
  `[T, H] @ [H, S*r]`, a mask that keeps each token's own adapter block, and one matmul against
  the stacked B `[T, S*r] @ [S*r, O]`. Masked entries are exact zeros, so the sums are those of
  the per-token form; costs S times the flops of the LoRA, but two big calls instead of a loop.
- grouped, as above, for every adapter.

All forms are timed by `python -m server.in_engine.lora_ops.bench --forms`.

Tokens with slot -1 (no adapter) are skipped: the LoRA adds nothing to them. Note that vLLM's
reference ops index with -1 too, which in PyTorch selects the *last* slot, so they apply the
adapter in slot `max_loras - 1` to base-model tokens when all slots are in use; the CUDA kernels
skip -1 as we do. With that slot empty (zeros) both give identical results.

Numerics follow the reference: the shrink result is float32 (computed in float32, or, with
scale 1, by a matmul in the model dtype that accumulates in float32 and rounds once: the same
value the reference gets when it casts its float32 buffer down), the expand runs in the output's
dtype on the downcast buffer, then one add into the output. Only the summation order inside the
matmuls differs; masked-out terms are exact zeros.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from server.in_engine.lora_ops import native, slot_writes

GROUPED_MIN_TOKENS = 128
"""With the native kernel, an adapter with at least this many tokens in a step gets the grouped
form (one matmul on its tokens) and the others the kernel. Measured with `--forms` of
`python -m server.in_engine.lora_ops.bench`: the kernel wins below ~128 tokens of one adapter (~256 when they are one run)."""

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
    big_slots: list[int]  # slots with >= GROUPED_MIN_TOKENS tokens (grouped form with the kernel)
    small_tokens: torch.Tensor  # [n] long: the other slots' tokens, slot by slot (for the kernel)
    _mask: dict[tuple[torch.dtype, float], torch.Tensor] = field(default_factory=dict)

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
        sizes = {slot: sum(b - a for a, b in spans) for slot, spans in runs.items()}
        big = [slot for slot in sorted(runs) if sizes[slot] >= GROUPED_MIN_TOKENS]
        # Slot by slot, so the kernel finds each adapter's weights in cache for its next token.
        small = [torch.arange(a, b) for slot in sorted(runs) if sizes[slot] < GROUPED_MIN_TOKENS
                 for a, b in runs[slot]]
        small_tokens = torch.cat(small) if small else torch.zeros(0, dtype=torch.long)
        return cls(indices, sorted(runs), rows, sum(sizes.values()) == indices.numel(), big, small_tokens)

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
        if len(self.slots) == 1 and isinstance(self.rows[self.slots[0]], slice):
            return False  # one adapter on one run of tokens: the grouped form is one plain matmul
        return self.num_tokens * (hi - lo) <= DENSE_MAX_ROWS

    def mask(self, dtype: torch.dtype, scale: float = 1.0) -> torch.Tensor:
        """[T, S, 1]: `scale` where slot lo+s is the token's adapter, else 0 (all 0 for -1)."""
        key = (dtype, scale)
        if key not in self._mask:
            lo, hi = self.span
            own = self.indices[:, None] == torch.arange(lo, hi, device=self.indices.device)
            self._mask[key] = (own.to(dtype) * scale)[:, :, None]
        return self._mask[key]


def _as_3d(w: torch.Tensor) -> torch.Tensor:
    """vLLM stacks LoRA weights as [slots, 1, out, in]; drop the 1."""
    return w[:, 0] if w.dim() == 4 else w


def _cached(owner: torch.Tensor, kind, dtype: torch.dtype, weights: tuple[torch.Tensor, ...], make,
            update=None):
    """A copy derived from stacked weights (`weights`), rebuilt or patched when they change.

    vLLM writes adapters into the stacked tensors in place (set_lora / reset_lora), which bumps
    each tensor's version counter; the copy is keyed on them and lives on the `owner` tensor.
    `update(copy, slots)` re-derives only the given slots of the copy in place: used when
    `slot_writes` knows every slot written since the copy was made (vLLM activating adapters),
    so that swapping one adapter in costs one slot's work, not all of them.
    """
    cache = getattr(owner, _CACHE_ATTR, None)
    if cache is None:
        cache = {}
        setattr(owner, _CACHE_ATTR, cache)
    key = (kind, dtype)
    versions = tuple(t._version for t in weights)
    hit = cache.get(key)
    if hit is not None:
        if hit[0] == versions:
            return hit[1]
        slots = slot_writes.since(weights, hit[0]) if update is not None else None
        if slots is not None:
            update(hit[1], sorted(slots))
            cache[key] = (versions, hit[1])
            return hit[1]
    value = make()
    cache[key] = (versions, value)
    return value


def stacked_a(a_stacked: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[slots, r, H] in the shrink's compute dtype, contiguous."""
    def update(out: torch.Tensor, slots: list[int]) -> None:
        a = _as_3d(a_stacked)
        for s in slots:
            out[s].copy_(a[s])
    return _cached(a_stacked, "a", dtype, (a_stacked,),
                   lambda: _as_3d(a_stacked).to(dtype).contiguous(), update)


def stacked_b(b_stacked: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[slots * r, O] in the expand's compute dtype: B_l^T of each slot, one under the other."""
    def make() -> torch.Tensor:
        b = _as_3d(b_stacked)  # [slots, O, r]
        return b.transpose(1, 2).to(dtype).reshape(b.shape[0] * b.shape[2], b.shape[1]).contiguous()

    def update(out: torch.Tensor, slots: list[int]) -> None:
        b = _as_3d(b_stacked)
        r = b.shape[2]
        for s in slots:
            out[s * r:(s + 1) * r].copy_(b[s].T)
    return _cached(b_stacked, "b", dtype, (b_stacked,), make, update)


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


def _native_plan(a_stacked: tuple[torch.Tensor, ...], b_stacked: tuple[torch.Tensor, ...],
                 output_slices: tuple[int, ...], dtype: torch.dtype) -> native.Kernel | None:
    """The native kernel bound to this module's weights (packed copies), or None when it cannot
    serve them. Built once, patched per slot written, like the copies above; this runs for every
    LoRA'd module in every step, so it is kept to the version check."""
    weights = (*a_stacked, *b_stacked)

    def make() -> native.Kernel | None:
        if not all(t.dtype == dtype for t in weights):
            return None
        return native.Kernel([_as_3d(t) for t in a_stacked], [_as_3d(t) for t in b_stacked], output_slices)

    def update(kernel: native.Kernel | None, slots: list[int]) -> None:
        if kernel is not None:
            kernel.update([_as_3d(t) for t in a_stacked], [_as_3d(t) for t in b_stacked], slots)
    return _cached(a_stacked[0], ("native", len(a_stacked)), dtype, weights, make, update)


def stacked_a_slices(a_stacked: tuple[torch.Tensor, ...], dtype: torch.dtype) -> torch.Tensor:
    """[slots * n * r, H]: the A of all n slices of a module, slot-major (rows: slot, slice, k),
    so that any range of slots is a row range, and one matmul shrinks for every slice."""
    def make() -> torch.Tensor:
        a = torch.stack([_as_3d(t) for t in a_stacked], 1)  # [slots, n, r, H]
        return a.to(dtype).reshape(-1, a.shape[-1]).contiguous()

    def update(out: torch.Tensor, slots: list[int]) -> None:
        a = [_as_3d(t) for t in a_stacked]
        view = out.view(a[0].shape[0], len(a), *a[0].shape[1:])
        for s in slots:
            for i, t in enumerate(a):
                view[s, i].copy_(t[s])
    return _cached(a_stacked[0], ("a_slices", len(a_stacked)), dtype, a_stacked, make, update)


def stacked_b_blocks(b_stacked: tuple[torch.Tensor, ...], dtype: torch.dtype) -> torch.Tensor:
    """[slots * n * r, sum(O_i)]: rows as in `stacked_a_slices`; row (slot, i, k) holds
    B_i[slot][:, k] in slice i's output columns and zeros elsewhere (block-diagonal per slot),
    so one matmul expands every slice into adjacent output columns."""
    def blocks(bs: list[torch.Tensor], out: torch.Tensor, slots) -> None:
        offset = 0
        for i, b in enumerate(bs):
            out[slots, i, :, offset:offset + b.shape[1]] = b[slots].transpose(1, 2)
            offset += b.shape[1]

    def make() -> torch.Tensor:
        bs = [_as_3d(t) for t in b_stacked]  # [slots, O_i, r] each
        slots, r = bs[0].shape[0], bs[0].shape[2]
        out = torch.zeros(slots, len(bs), r, sum(b.shape[1] for b in bs), dtype=dtype, device=bs[0].device)
        blocks(bs, out, slice(None))
        return out.reshape(-1, out.shape[-1])

    def update(out: torch.Tensor, slots: list[int]) -> None:
        bs = [_as_3d(t) for t in b_stacked]
        view = out.view(bs[0].shape[0], len(bs), bs[0].shape[2], out.shape[-1])
        blocks(bs, view, torch.tensor(slots))
    return _cached(b_stacked[0], ("b_blocks", len(b_stacked)), dtype, b_stacked, make, update)


def lora_linear(y: torch.Tensor, x: torch.Tensor, a_stacked: tuple[torch.Tensor, ...],
                b_stacked: tuple[torch.Tensor, ...], scale: float, output_slices: tuple[int, ...],
                groups: LoRAGroups, buffer_dtype: torch.dtype = torch.float32) -> None:
    """y[:, slice i] += (scale * x @ A_i[slot]^T) @ B_i[slot]^T for each slice i, in place.

    What vLLM's `add_lora_linear` computes: the shrink into a float32 buffer, which is cast to
    y's dtype for the expand. With scale 1 (what vLLM's linear layers pass: the LoRA scaling is
    folded into B) the shrink runs directly in y's dtype: a bf16 matmul accumulates in float32
    and rounds once, which is that cast of the float32 result up to summation order."""
    if not groups.any:
        return
    x = x.view(-1, x.shape[-1])
    y2 = y.view(-1, y.shape[-1])
    slots = groups.slots  # those the grouped form below handles
    kernel = _native_plan(a_stacked, b_stacked, output_slices, y.dtype) if native.supports(y.dtype) else None
    if kernel is not None and x.stride(1) == 1 and y2.stride(1) == 1 and x.dtype == y.dtype:
        if groups.small_tokens.numel():
            kernel(y2, x, groups.indices, groups.small_tokens, scale)
        slots = groups.big_slots
        if not slots:
            return
    n = len(a_stacked)
    shrink_dtype = y.dtype if scale == 1.0 else buffer_dtype
    a = stacked_a_slices(a_stacked, shrink_dtype)  # [slots*n*r, H]
    r = a.shape[0] // (n * _as_3d(a_stacked[0]).shape[0])
    T = x.shape[0]
    xs = x.to(shrink_dtype)
    if kernel is None and groups.dense:
        lo, hi = groups.span
        S = hi - lo
        b = stacked_b_blocks(b_stacked, y.dtype)  # [slots*n*r, sum(O)]
        wide = xs @ a[lo * n * r:hi * n * r].T  # [T, S*n*r]
        # scale * (x @ A) as the reference rounds it (the mask holds 0 or `scale`: the same
        # product), zero outside each token's own slot.
        wide = wide.view(T, S, n * r).mul_(groups.mask(shrink_dtype, scale)).view(T, -1)
        y2[:, :sum(output_slices)] += wide.to(y.dtype) @ b[lo * n * r:hi * n * r]
        return
    bs = [stacked_b(t, y.dtype) for t in b_stacked]  # [slots*r, O_i] each
    for slot in slots:
        rows = groups.rows[slot]
        buf = _rows(xs, rows) @ a[slot * n * r:(slot + 1) * n * r].T  # [len, n*r]
        if scale != 1.0:
            buf = buf.mul_(scale)
        buf = buf.to(y.dtype)
        delta = torch.cat([buf[:, i * r:(i + 1) * r] @ bs[i][slot * r:(slot + 1) * r] for i in range(n)], 1)
        # One add into y's leading columns (index_add_ into a column slice is ~10x slower).
        _put(y2 if y2.shape[1] == delta.shape[1] else y2[:, :delta.shape[1]], rows, delta, add=True)
