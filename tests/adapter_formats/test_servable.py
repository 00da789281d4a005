"""Can the server load this adapter: LoRA configs and weights against the base model's linear
layers (without an engine), and the pre-flight form training applies to a PEFT config and targets."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from adapter_formats.servable import AdapterInvalid, check_targets, config_problems, validate_lora
from server.adapters.base_model import BaseModelInfo


@pytest.fixture(scope="module")
def base(tiny):
    return BaseModelInfo.load(tiny["base"]).linear_shapes


def config_of(tiny, name):
    return json.loads((tiny[name] / "adapter_config.json").read_text())


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
    ({"rank_pattern": {"q_proj": "8"}}, "rank_pattern has ranks that are not positive integers"),
    ({"bias": None}, "bias=None"),
    ({"trainable_token_indices": [5, 6]}, "trainable_token_indices"),
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


def test_shapes_are_read_without_torch_whatever_the_dtype(tiny, base, tmp_path):
    """The weights' header is read through numpy, which has no bfloat16: shapes only, never data."""
    path = tmp_path / "adapter_model.safetensors"
    save_file({"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.zeros(8, 128, dtype=torch.bfloat16),
               "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": torch.zeros(128, 8, dtype=torch.bfloat16)},
              path)
    spec = validate_lora(config_of(tiny, "lora-a"), path, base, max_rank=16)
    assert spec.rank == 8 and spec.target_modules == ("q_proj",)


def test_unreadable_weights(tiny, base, tmp_path):
    path = tmp_path / "adapter_model.safetensors"
    path.write_bytes(b"\xff" * 64)
    with pytest.raises(AdapterInvalid, match="not a readable safetensors"):
        validate_lora(config_of(tiny, "lora-a"), path, base, max_rank=16)


def test_every_config_problem_is_named():
    config = {"peft_type": "LORA", "r": 32, "use_dora": True, "modules_to_save": ["lm_head"], "bias": "all"}
    reasons = config_problems(config, max_lora_rank=16)
    assert [r.split(" ")[0] for r in reasons] == ["LoRA", "DoRA", "modules_to_save", "LoRA"]
    assert "LoRA rank 32 is above the server's --max-lora-rank 16" in reasons[0]
    assert "modules_to_save ['lm_head']" in reasons[2] and "bias='all'" in reasons[3]


def test_a_peft_config_as_training_passes_it():
    from peft import LoraConfig, PeftType, PromptTuningConfig, TaskType

    lora = LoraConfig(task_type=TaskType.CAUSAL_LM, r=8, target_modules=["q_proj"], modules_to_save=["lm_head"])
    assert [r.split(" ")[0] for r in config_problems(lora.to_dict(), 16)] == ["modules_to_save"]
    prompt = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=4)
    assert config_problems(prompt.to_dict(), 16) == []
    assert config_problems({"peft_type": PeftType.LORA, "r": 8}, 16) == []  # PEFT's enum, as to_dict() has it
    assert config_problems({"peft_type": "PREFIX_TUNING"}, 16)[0].startswith("prefix tuning")
    assert "IA3 is not servable" in config_problems({"peft_type": "IA3"}, 16)[0]


def test_targets_must_be_linear_layers_of_the_base():
    modules = {"model.embed_tokens": "Embedding", "model.layers.0.self_attn.q_proj": "Linear",
               "model.layers.0.mlp.up_proj": "Linear4bit"}
    assert check_targets(["q_proj", "up_proj"], modules) == []
    assert check_targets(["all-linear"], modules) == []
    assert "not linear layers" in check_targets(["embed_tokens"], modules)[0]
    assert "matches no module" in check_targets(["nonexistent"], modules)[0]
