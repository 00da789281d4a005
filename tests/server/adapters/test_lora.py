"""LoRA validation against the base model, without an engine."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from server.adapters.base_model import BaseModelInfo
from server.adapters.lora import AdapterInvalid, validate_lora


@pytest.fixture(scope="module")
def base(tiny):
    return BaseModelInfo.load(tiny["base"])


def config_of(tiny, name):
    return json.loads((tiny[name] / "adapter_config.json").read_text())


def test_base_model_shapes_come_from_config(base):
    assert base.hidden_size == 128
    assert base.linear_shapes["model.layers.0.self_attn.q_proj"] == (128, 128)
    assert base.linear_shapes["model.layers.1.mlp.down_proj"] == (256, 128)
    assert base.identity.startswith("sha256:")


def test_real_adapter_passes(tiny, base):
    spec = validate_lora(config_of(tiny, "lora-b"), tiny["lora-b"] / "adapter_model.safetensors",
                         base, max_rank=16)
    assert spec.rank == 16 and "q_proj" in spec.target_modules


@pytest.mark.parametrize("change, reason", [
    ({"r": 0}, "no valid rank"),
    ({"use_dora": True}, "DoRA"),
    ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
    ({"bias": "all"}, "bias"),
    ({"rank_pattern": {"q_proj": 64}}, "rank 64 is above"),
])
def test_config_problems(tiny, base, change, reason):
    config = {**config_of(tiny, "lora-a"), **change}
    with pytest.raises(AdapterInvalid, match=reason):
        validate_lora(config, tiny["lora-a"] / "adapter_model.safetensors", base, max_rank=16)


@pytest.mark.parametrize("tensors, reason", [
    ({"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.zeros(8, 128)},
     "needs lora_A and lora_B"),
    ({"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.zeros(8, 64),
      "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": torch.zeros(128, 8)},
     "do not fit"),
    ({"base_model.model.model.embed_tokens.lora_embedding_A": torch.zeros(8, 512)},
     "not a PEFT LoRA weight"),
    ({"base_model.model.model.layers.0.self_attn.rotary.lora_A.weight": torch.zeros(8, 128),
      "base_model.model.model.layers.0.self_attn.rotary.lora_B.weight": torch.zeros(128, 8)},
     "not a linear layer"),
    ({"base_model.model.lm_head.weight": torch.zeros(512, 128)}, "not a LoRA A/B matrix"),
])
def test_weight_problems(tiny, base, tmp_path, tensors, reason):
    path = tmp_path / "adapter_model.safetensors"
    save_file(tensors, path)
    with pytest.raises(AdapterInvalid, match=reason):
        validate_lora(config_of(tiny, "lora-a"), path, base, max_rank=16)


def test_unreadable_weights(tiny, base, tmp_path):
    path = tmp_path / "adapter_model.safetensors"
    path.write_bytes(b"\xff" * 64)
    with pytest.raises(AdapterInvalid, match="not a readable safetensors"):
        validate_lora(config_of(tiny, "lora-a"), path, base, max_rank=16)
