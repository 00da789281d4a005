"""The grouped LoRA ops against vLLM's own CPU ops (`vllm.lora.ops.torch_ops`) on random inputs.

Reference and ours run through the real punica wrappers (`PunicaWrapperCPU` vs
`GroupedPunicaWrapperCPU`) with the same `LoRAMapping`, so the per-step metadata path is covered
too; `shrink` / `expand` are also checked against `sgmv_shrink` / `sgmv_expand_slice` directly.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from vllm.lora.layers import LoRAMapping
from vllm.lora.ops.torch_ops import bgmv_expand_slice, bgmv_shrink, sgmv_expand_slice, sgmv_shrink
from vllm.lora.punica_wrapper.punica_cpu import PunicaWrapperCPU
from vllm.lora.punica_wrapper.utils import compute_meta

from server.in_engine.lora_ops import grouped, native, slot_writes
from server.in_engine.lora_ops.grouped import LoRAGroups, expand, shrink
from server.in_engine.lora_ops.punica import GroupedPunicaWrapperCPU


def kernel_caps() -> dict[str, str]:
    """Code path -> the ISA cap that builds it, for every path of the kernel this CPU can run (an
    AVX-512 machine with bf16 runs all three; CI's AVX2-only one the portable path only)."""
    caps: dict[str, str] = {}
    for cap in native.ISA_FLAGS:
        lib = native._library(cap)
        assert lib is not None, "the kernel must build on the test machine"
        caps.setdefault(native.PATHS[lib.lora_kernel_path()], cap)
    return caps


KERNEL_CAPS = kernel_caps()


@pytest.fixture(params=[*(f"kernel-{path}" for path in KERNEL_CAPS), "kernel+grouped", "dense", "grouped"])
def form(request, monkeypatch):
    """Run each test with each form forced (size rules pick them per step in the engine): the C++
    kernel alone, on each of its code paths this CPU runs (ADAPTER_SERVE_LORA_ISA), the kernel with
    the grouped form for any adapter with >= 4 tokens, and the two torch forms (what runs where the
    kernel cannot be built)."""
    if request.param.startswith("kernel"):
        path = request.param.removeprefix("kernel-") if request.param.startswith("kernel-") else None
        monkeypatch.setenv(native.ISA_ENV, KERNEL_CAPS[path] if path else "native")
        assert path is None or native.path() == path
        monkeypatch.setattr(grouped, "GROUPED_MIN_TOKENS", 4 if path is None else 1 << 62)
    else:
        monkeypatch.setattr(native, "supports", lambda dtype: False)
        monkeypatch.setattr(grouped, "DENSE_MAX_ROWS", 1 << 62 if request.param == "dense" else 0)
    return request.param


def layout(g: torch.Generator, tokens: int, slots: int, kind: str) -> list[int]:
    """Slot per token, -1 = no adapter. The last slot is left unused: see test_no_adapter_slot."""
    usable = slots - 1
    if kind == "decode":  # one token per request, adapters interleaved
        return torch.randint(-1, usable, (tokens,), generator=g).tolist()
    if kind == "prefill":  # a few requests of contiguous tokens, an adapter repeated non-adjacent
        cuts = sorted(torch.randperm(tokens - 1, generator=g)[: min(5, tokens - 1)].add(1).tolist())
        spans = list(zip([0, *cuts], [*cuts, tokens]))
        return [s for a, b in spans for s in [torch.randint(-1, usable, (1,), generator=g).item()] * (b - a)]
    if kind == "one":
        return [0] * tokens
    if kind == "none":
        return [-1] * tokens
    raise ValueError(kind)


def weights(g, slots, rank, size_in, slices, dtype):
    a = tuple((torch.randn(slots, 1, rank, size_in, generator=g) * 0.1).to(dtype) for _ in slices)
    b = tuple((torch.randn(slots, 1, s, rank, generator=g) * 0.1).to(dtype) for s in slices)
    for t in (*a, *b):
        t[slots - 1] = 0  # the reference applies this slot to -1 tokens; an empty slot makes that a no-op
    return a, b


def assert_matches(ours: torch.Tensor, ref: torch.Tensor, magnitude: torch.Tensor) -> None:
    """Equal up to summation order. Same formulas and casts as the reference; only the order of
    the sums inside the matmuls differs (its einsum is a per-token bmm, ours one gemm per group),
    which in float32 moves the shrink result by ~1e-7 relative. Rarely that carries a buffer
    value across a rounding boundary when it is cast to the model dtype before the expand; then
    an output moves by at most one rounding step of the terms it sums: eps * (|y| + sum of
    |terms|), `magnitude` being that sum, the same LoRA on |x|, |A|, |B|. Measured: ~1e-4 of
    bf16 elements move, none for most shapes."""
    eps = torch.finfo(ref.dtype).eps * (8 if ref.dtype == torch.float32 else 1)
    bound = eps * (ref.float().abs() + magnitude.float()) + torch.finfo(ref.dtype).tiny
    diff = (ours.float() - ref.float()).abs()
    assert bool((diff <= bound).all()), f"max excess {(diff - bound).max().item()}"
    if ref.dtype != torch.float32:
        assert (ours == ref).float().mean().item() >= 0.999


def reference_wrapper(index: list[int], slots: int, cls=PunicaWrapperCPU):
    ids = [s + 1 if s >= 0 else 0 for s in index]
    mapping = LoRAMapping(tuple(ids), tuple(ids), is_prefill=True)  # vLLM V1 on CPU: always prefill
    wrapper = cls(4096, 256, "cpu")
    wrapper.update_metadata(mapping, list(range(1, slots + 1)), slots + 1, 512)
    return wrapper


def run_wrappers(index, slices, a, b, x, y0, scale=1.0):
    """(vLLM's result, ours, magnitude of the LoRA terms) of add_lora_linear."""
    slots = a[0].shape[0]
    outs = []
    for cls in (PunicaWrapperCPU, GroupedPunicaWrapperCPU):
        y = y0.clone()
        reference_wrapper(index, slots, cls).add_lora_linear(y, x, a, b, scale, slices)
        outs.append(y)
    magnitude = torch.zeros_like(y0)
    reference_wrapper(index, slots).add_lora_linear(
        magnitude, x.abs(), tuple(t.abs() for t in a), tuple(t.abs() for t in b), abs(scale), slices)
    return (*outs, magnitude)


SHAPES = [  # tokens, slots, rank, size_in, slices
    (1, 2, 8, 64, (96,)),
    (16, 9, 16, 512, (512, 512, 512)),  # qkv of the bench model, 8 adapters + empty slot
    (16, 9, 16, 1408, (512,)),  # down
    (64, 5, 16, 512, (1408, 1408)),  # gate_up
    (200, 9, 8, 96, (40, 24)),  # odd sizes; rank 8 in a rank-16 stack is padded with zeros
    (300, 3, 32, 128, (256,)),
    (7, 3, 1, 40, (24, 70)),  # rank 1, sizes off the kernel's blocks (padded there)
]


@pytest.mark.parametrize("shape,kind", list(itertools.product(SHAPES, ["decode", "prefill", "one", "none"])))
def test_lora_linear_matches_vllm(shape, kind, form):
    tokens, slots, rank, size_in, slices = shape
    g = torch.Generator().manual_seed(tokens * 31 + slots)
    a, b = weights(g, slots, rank, size_in, slices, torch.bfloat16)
    x = torch.randn(tokens, size_in, generator=g).to(torch.bfloat16)
    y0 = torch.randn(tokens, sum(slices), generator=g).to(torch.bfloat16)
    index = layout(g, tokens, slots, kind)
    ref, ours, magnitude = run_wrappers(index, slices, a, b, x, y0, scale=0.5)
    assert_matches(ours, ref, magnitude)
    if kind == "none":
        assert torch.equal(ours, y0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_other_dtypes(dtype, form):
    g = torch.Generator().manual_seed(7)
    slices = (64, 64, 64)
    a, b = weights(g, 5, 16, 128, slices, dtype)
    x = torch.randn(40, 128, generator=g).to(dtype)
    y0 = torch.randn(40, sum(slices), generator=g).to(dtype)
    ref, ours, magnitude = run_wrappers(layout(g, 40, 5, "prefill"), slices, a, b, x, y0)
    assert_matches(ours, ref, magnitude)


@pytest.mark.parametrize("kind,add_inputs", list(itertools.product(["decode", "prefill", "none"], [True, False])))
def test_shrink_expand_match_sgmv_and_bgmv(kind, add_inputs, form):
    g = torch.Generator().manual_seed(3)
    tokens, slots, rank, size_in, size_out, offset = 48, 6, 16, 256, 192, 64
    a, b = weights(g, slots, rank, size_in, (size_out,), torch.bfloat16)
    x = torch.randn(tokens, size_in, generator=g).to(torch.bfloat16)
    index = torch.tensor(layout(g, tokens, slots, kind))
    groups = LoRAGroups.from_indices(index)
    meta = compute_meta(index)[:6]

    buf_ref = torch.zeros(tokens, rank)
    sgmv_shrink(x, a[0], buf_ref, *meta, 0.25)
    buf = torch.full((tokens, rank), float("nan"))  # every row must be written
    shrink(buf, x, a[0], groups, 0.25)
    torch.testing.assert_close(buf, buf_ref, rtol=1e-6, atol=1e-6)  # float32, order of sums only
    buf_bgmv = torch.zeros(tokens, rank)
    bgmv_shrink(x, a[0], buf_bgmv, index, 0.25)
    torch.testing.assert_close(buf, buf_bgmv, rtol=1e-6, atol=1e-6)

    y0 = torch.randn(tokens, offset + size_out + 32, generator=g).to(torch.bfloat16)
    y_ref, y_bgmv, y = y0.clone(), y0.clone(), y0.clone()
    sgmv_expand_slice(buf_ref, b[0], y_ref, *meta, offset, size_out, add_inputs)
    bgmv_expand_slice(buf_ref, b[0], y_bgmv, index, offset, size_out, add_inputs)
    expand(y, buf_ref, b[0], groups, offset, size_out, add_inputs)
    assert torch.equal(y_ref, y_bgmv)
    magnitude = torch.zeros_like(y0)
    bgmv_expand_slice(buf_ref.abs(), b[0].abs(), magnitude, index, offset, size_out, False)
    assert_matches(y, y_ref, magnitude)
    assert torch.equal(y[:, :offset], y0[:, :offset]) and torch.equal(y[:, offset + size_out:], y0[:, offset + size_out:])


def test_weights_changed_in_place_are_picked_up(form):
    """vLLM loads adapters into the stacked tensors in place; the cached derived copies follow."""
    g = torch.Generator().manual_seed(5)
    slices = (64,)
    a, b = weights(g, 4, 8, 32, slices, torch.bfloat16)
    x = torch.randn(6, 32, generator=g).to(torch.bfloat16)
    y0 = torch.zeros(6, 64, dtype=torch.bfloat16)
    index = [0, 1, 2, -1, 1, 0]
    run_wrappers(index, slices, a, b, x, y0)  # fills the caches
    a[0][1, 0, :8, :32].copy_(torch.randn(8, 32, generator=g))  # as LoRA layers' set_lora does
    b[0][2] = 0  # as reset_lora does
    ref, ours, magnitude = run_wrappers(index, slices, a, b, x, y0)
    assert_matches(ours, ref, magnitude)


def test_no_adapter_slot():
    """Tokens with slot -1 get no LoRA. vLLM's torch ops index the stack with -1, i.e. they apply
    the last slot's adapter to base-model tokens (the CUDA kernels skip -1); with that slot
    empty, as in the other tests, both agree."""
    g = torch.Generator().manual_seed(11)
    slices = (32,)
    a = (torch.randn(3, 1, 8, 16, generator=g).to(torch.bfloat16),)
    b = (torch.randn(3, 1, 32, 8, generator=g).to(torch.bfloat16),)  # last slot NOT empty
    x = torch.randn(4, 16, generator=g).to(torch.bfloat16)
    y0 = torch.zeros(4, 32, dtype=torch.bfloat16)
    ref, ours, _ = run_wrappers([0, -1, 2, -1], slices, a, b, x, y0)
    assert torch.equal(ours[[1, 3]], y0[[1, 3]])
    assert not torch.equal(ref[[1, 3]], y0[[1, 3]])  # the reference's -1 = last slot
    assert torch.equal(ours[[0, 2]], ref[[0, 2]])


def test_kernel_serves_small_groups_without_torch_forms(monkeypatch):
    """With the kernel built, adapters with few tokens never reach the torch forms."""
    def torch_form(*args):
        raise AssertionError("torch form used")
    monkeypatch.setattr(grouped, "stacked_a_slices", torch_form)
    g = torch.Generator().manual_seed(13)
    slices = (512, 512, 512)
    a, b = weights(g, 9, 16, 512, slices, torch.bfloat16)
    x = torch.randn(16, 512, generator=g).to(torch.bfloat16)
    y0 = torch.randn(16, 1536, generator=g).to(torch.bfloat16)
    ref, ours, magnitude = run_wrappers(layout(g, 16, 9, "decode"), slices, a, b, x, y0)
    assert_matches(ours, ref, magnitude)
    assert not torch.equal(ours, y0)


@pytest.mark.parametrize("kind", ["decode", "one", "none"])
def test_lora_logits_match_vllm(kind, form):
    """LoRA on lm_head: the sampled rows against the vocabulary (a wide single slice)."""
    g = torch.Generator().manual_seed(17)
    rows, slots, rank, hidden, vocab = 12, 5, 16, 128, 520
    a, b = weights(g, slots, rank, hidden, (vocab,), torch.bfloat16)
    x = torch.randn(rows, hidden, generator=g).to(torch.bfloat16)
    y0 = torch.randn(rows, vocab, generator=g).to(torch.bfloat16)
    index = layout(g, rows, slots, kind)
    outs = []
    for cls in (PunicaWrapperCPU, GroupedPunicaWrapperCPU):
        y = y0.clone()
        reference_wrapper(index, slots, cls).add_lora_logits(y, x, a[0], b[0], 0.5)
        outs.append(y)
    magnitude = torch.zeros_like(y0)
    reference_wrapper(index, slots).add_lora_logits(magnitude, x.abs(), a[0].abs(), b[0].abs(), 0.5)
    assert_matches(outs[1], outs[0], magnitude)
    assert torch.equal(outs[1], y0) == (kind == "none")


def test_logged_slot_writes_patch_the_copies_in_place(form):
    """An adapter swapped into a slot (vLLM's activate_adapter, logged by slot_writes) updates
    that slot of every derived copy in place: same objects, same results as a rebuild."""
    g = torch.Generator().manual_seed(17)
    slices = (64, 48)
    a, b = weights(g, 5, 8, 32, slices, torch.bfloat16)
    x = torch.randn(6, 32, generator=g).to(torch.bfloat16)
    y0 = torch.zeros(6, sum(slices), dtype=torch.bfloat16)
    index = [0, 1, 2, -1, 1, 3]
    run_wrappers(index, slices, a, b, x, y0)  # fills the caches
    def copies() -> dict:
        return {(i, k): id(v[1]) for i, t in enumerate((*a, *b))
                for k, v in getattr(t, grouped._CACHE_ATTR, {}).items()}
    before_swaps = copies()
    assert before_swaps
    for slot in (1, 3):  # two activations, each logged
        before = [t._version for t in (*a, *b)]
        for t in (*a, *b):
            t[slot] = 0  # vLLM's set_lora: zero the slot, then copy the adapter in
            t[slot, 0, :, :].copy_(torch.randn(t.shape[2:], generator=g) * 0.1)
        slot_writes.record((*a, *b), before, slot)
    ref, ours, magnitude = run_wrappers(index, slices, a, b, x, y0)
    assert_matches(ours, ref, magnitude)
    assert copies() == before_swaps


def test_slot_write_chains():
    t = torch.zeros(4, 2)
    v0 = t._version
    before = [t._version]
    t[1] = 1
    slot_writes.record([t], before, 1)
    assert slot_writes.since([t], [v0]) == {1}
    before = [t._version]
    t[2] = 1
    slot_writes.record([t], before, 2)
    assert slot_writes.since([t], [v0]) == {1, 2}
    assert slot_writes.since([t], [before[0]]) == {2}
    t[0] = 1  # a write nobody logged: the chain is broken
    assert slot_writes.since([t], [v0]) is None
    assert slot_writes.since([t], [t._version]) == set()
