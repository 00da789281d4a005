"""How many LoRA adapters the engine can run in one batch (`max_loras`, its adapter slots),
when the operator does not say: as many as a memory budget holds, on CPU.

vLLM's scheduler runs at most `max_loras` distinct adapters at a time, so with fewer slots than
adapters in flight the batch shrinks to the slots (issue 27: 48 adapters over 8 slots ran at
0.77x of 8 adapters; over 48 slots at 1.00x, on the bench model at 16 streams). On a GPU a slot
costs GPU memory and the punica kernels' work; on CPU it costs host memory only (the server's
LoRA ops read each token's adapter where it lies, whatever the number of slots), so there the
default is sized from `--lora-slots-gib`, at most `MAX_AUTO_SLOTS`. A slot holds, for every
layer vLLM wraps, A (rank x in) and B (out x rank) in the model's dtype: the attention and MLP
projections of each decoder layer and the output layer (whose B spans the vocabulary, padded
as vLLM pads it for LoRA). Measured on the bench model (26M, bf16, rank 16): 2.9 MiB per slot
in the engine core's RSS against 2.4 MiB estimated here (vLLM's own buffers besides).
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_AUTO_SLOTS = 256
"""vLLM's CPU default `max_num_seqs` (and a batch cannot hold more distinct adapters than
requests); more slots would cost memory for nothing."""

DEFAULT_SLOTS_ELSEWHERE = 8
"""On accelerators: the server's long-standing default."""

LORA_VOCAB_PADDING = 256
"""vLLM pads the output layer's LoRA to a multiple of this (`lora_vocab_padding_size`)."""

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class Slots:
    count: int
    slot_bytes: int | None
    """The estimate behind an automatic count (None: the operator's --max-loras)."""
    why: str


def slot_bytes(text_config, rank: int, dtype_bytes: int) -> int:
    """Bytes of one adapter slot of `rank` for a decoder whose HF text config is `text_config`."""
    hidden = text_config.hidden_size
    layers = text_config.num_hidden_layers
    heads = text_config.num_attention_heads
    head_dim = getattr(text_config, "head_dim", None) or hidden // heads
    kv_heads = getattr(text_config, "num_key_value_heads", None) or heads
    intermediate = getattr(text_config, "intermediate_size", None) or 4 * hidden
    q, kv = heads * head_dim, kv_heads * head_dim
    # (in + out) of q, k, v, o, then gate, up, down: each is A (rank x in) + B (out x rank).
    per_layer = (hidden + q) + 2 * (hidden + kv) + (q + hidden) + 2 * (hidden + intermediate) \
        + (intermediate + hidden)
    vocab = -(-text_config.vocab_size // LORA_VOCAB_PADDING) * LORA_VOCAB_PADDING
    return rank * (layers * per_layer + hidden + vocab) * dtype_bytes


def resolve(max_loras: int | None, budget_gib: float, max_cpu_loras: int | None, on_cpu: bool,
            text_config, rank: int, dtype: str) -> Slots:
    """The engine's `max_loras`: the operator's, or sized from the budget on CPU (never above
    --max-cpu-loras, which vLLM requires to hold every slot), or 8 elsewhere."""
    if max_loras is not None:
        return Slots(max_loras, None, "--max-loras")
    if not on_cpu:
        return Slots(DEFAULT_SLOTS_ELSEWHERE, None, "the default off CPU")
    each = slot_bytes(text_config, rank, DTYPE_BYTES.get(dtype, 4))
    count = max(1, min(MAX_AUTO_SLOTS, int(budget_gib * 2**30 // each)))
    why = f"--lora-slots-gib {budget_gib:g} at {each / 2**20:.1f} MiB per slot (rank {rank}, {dtype})"
    if max_cpu_loras is not None and max_cpu_loras < count:
        count, why = max_cpu_loras, f"--max-cpu-loras {max_cpu_loras} (vLLM keeps every slot's adapter in it)"
    return Slots(count, each, why)
