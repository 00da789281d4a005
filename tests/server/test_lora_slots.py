"""The estimate behind the CPU engine's default number of LoRA slots."""

from __future__ import annotations

from types import SimpleNamespace

from server import lora_slots

# The bench model (loadtests/bench/assets.py): measured 2.9 MiB per slot at rank 16, bf16
# (the engine core's RSS with 256 slots against 8).
BENCH = SimpleNamespace(hidden_size=512, intermediate_size=1408, num_hidden_layers=8, num_attention_heads=8,
                        num_key_value_heads=8, head_dim=64, vocab_size=512)
# Qwen2.5-0.5B's shapes (issue 27).
QWEN_05B = SimpleNamespace(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                           num_key_value_heads=2, head_dim=64, vocab_size=151936)


def test_slot_size_counts_every_projection_and_the_padded_output_layer():
    # Per layer: q, k, v, o (512 -> 512 each) and gate, up (512 -> 1408), down (1408 -> 512).
    per_layer = 4 * (512 + 512) + 3 * (512 + 1408)
    assert lora_slots.slot_bytes(BENCH, 16, 2) == 16 * (8 * per_layer + 512 + 512) * 2  # vocab: 512, padded to 256s
    assert 2.4 * 2**20 < lora_slots.slot_bytes(BENCH, 16, 2) < 2.9 * 2**20
    # GQA: k and v project to 2 heads; the output layer's B spans the 151,936-token vocabulary.
    assert 21 * 2**20 < lora_slots.slot_bytes(QWEN_05B, 16, 2) < 23 * 2**20


def test_resolve():
    auto = lora_slots.resolve(None, 1.0, None, True, BENCH, 16, "bfloat16")
    assert auto.count == lora_slots.MAX_AUTO_SLOTS and auto.slot_bytes > 0
    assert lora_slots.resolve(None, 1.0, None, True, QWEN_05B, 16, "bfloat16").count == 47
    assert lora_slots.resolve(None, 1.0, 32, True, BENCH, 16, "bfloat16").count == 32
    assert lora_slots.resolve(None, 1e-6, None, True, BENCH, 16, "bfloat16").count == 1
    assert lora_slots.resolve(5, 1.0, None, True, BENCH, 16, "bfloat16").count == 5
    assert lora_slots.resolve(None, 1.0, None, False, None, 16, "bfloat16").count == 8
