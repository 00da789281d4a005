"""The shared pipeline's GPU-facing options reach the model and the trainer: the base's dtype,
gradient checkpointing, sequence packing / padding-free batches."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.training.conftest import make_recipe
from training.data import load_splits
from training.methods import METHODS
from training.methods.common import Refused, load_trainable_model, sft_config, train

EXTRA = {"lora": {"lora": {"rank": 4}}, "prompt_tuning": {"prompt_tuning": {"num_virtual_tokens": 4}},
         "selective": {"selective": {"last_layers": 1}}, "full": {}}


@pytest.mark.parametrize("command", ["lora", "prompt_tuning", "selective"])
def test_a_bfloat16_recipe_loads_the_base_in_bfloat16(command, tiny, reverse_data, tmp_path):
    recipe = make_recipe(command, tiny["base"], reverse_data, tmp_path, model={"dtype": "bfloat16"}, **EXTRA[command])
    model = load_trainable_model(recipe, METHODS[command], AutoTokenizer.from_pretrained(tiny["base"]))
    frozen = [p for p in model.parameters() if not p.requires_grad]
    assert frozen and all(p.dtype == torch.bfloat16 for p in frozen)
    if command == "selective":  # the unfrozen layers train in the recipe's dtype too
        assert all(p.dtype == torch.bfloat16 for p in model.parameters() if p.requires_grad)


def test_a_float32_recipe_loads_float32(tiny, reverse_data, tmp_path):
    recipe = make_recipe("lora", tiny["base"], reverse_data, tmp_path, model={"dtype": "float32"})
    model = load_trainable_model(recipe, METHODS["lora"], None)
    assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize("command", ["lora", "prompt_tuning", "full"])
def test_gradient_checkpointing_reaches_the_model_and_the_trainer(command, tiny, reverse_data, tmp_path):
    on = make_recipe(command, tiny["base"], reverse_data, tmp_path, train={"gradient_checkpointing": True},
                     **EXTRA[command])
    tokenizer = AutoTokenizer.from_pretrained(tiny["base"])
    model = load_trainable_model(on, METHODS[command], tokenizer)
    assert model.is_gradient_checkpointing
    args = sft_config(on, tmp_path, False)
    assert args.gradient_checkpointing and args.gradient_checkpointing_kwargs == {"use_reentrant": False}
    off = make_recipe(command, tiny["base"], reverse_data, tmp_path, **EXTRA[command])
    assert not load_trainable_model(off, METHODS[command], tokenizer).is_gradient_checkpointing
    assert not sft_config(off, tmp_path, False).gradient_checkpointing


def test_qlora_checkpoints_by_default(tiny, reverse_data, tmp_path):
    recipe = make_recipe("qlora", tiny["base"], reverse_data, tmp_path)
    assert load_trainable_model(recipe, METHODS["qlora"], None).is_gradient_checkpointing


def test_checkpointing_trades_time_for_memory_not_results(tiny, reverse_data, tmp_path):
    """Recomputed activations are the same activations: the same LoRA with and without it."""
    adapters = {}
    for flag in (False, True):
        out = tmp_path / f"gc-{flag}"
        train(make_recipe("lora", tiny["base"], reverse_data, out, model={"dtype": "float32"},
                          train={"gradient_checkpointing": flag, "bf16": False, "max_steps": 2},
                          lora={"rank": 4, "dropout": 0.0}), METHODS["lora"])
        adapters[flag] = load_file(out / "adapter" / "adapter_model.safetensors")
    assert all(torch.allclose(adapters[False][k], adapters[True][k], atol=1e-6) for k in adapters[False])


def test_packing_options_reach_the_sft_config(tiny, reverse_data, tmp_path):
    packed = sft_config(make_recipe("lora", tiny["base"], reverse_data, tmp_path, data={"packing": True}), tmp_path,
                        False)
    assert packed.packing and packed.max_length == 64  # rows of data.max_length tokens
    free = sft_config(make_recipe("lora", tiny["base"], reverse_data, tmp_path, data={"padding_free": True}),
                      tmp_path, False)
    assert free.padding_free and not free.packing and free.max_length is None
    plain = sft_config(make_recipe("lora", tiny["base"], reverse_data, tmp_path), tmp_path, False)
    assert not plain.packing and not plain.padding_free


def test_a_padding_free_batch_has_the_loss_of_the_padded_one(tiny, reverse_data, tmp_path):
    """Examples concatenated into one row keep to themselves: with SDPA (CPU) transformers builds a
    block-diagonal mask from the restarting position ids, so no example attends to another."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    recipe = make_recipe("lora", tiny["base"], reverse_data, tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tiny["base"])
    rows = [load_splits(recipe.data, tokenizer).train[i] for i in range(6)]
    model = AutoModelForCausalLM.from_pretrained(tiny["base"], dtype=torch.float32)
    losses = {}
    for padding_free in (False, True):
        batch = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=padding_free)(rows)
        assert ("attention_mask" in batch) != padding_free
        # use_cache=False as TRL's SFTTrainer passes it: with a cache transformers skips the packed-mask path.
        losses[padding_free] = model(**batch, use_cache=False).loss.item()
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)


@pytest.mark.parametrize("data", [{"packing": True}, {"padding_free": True}])
def test_packing_is_refused_for_prompt_tuning(data, tiny, reverse_data, tmp_path):
    with pytest.raises(Refused, match="soft prompt goes before each row"):
        train(make_recipe("prompt_tuning", tiny["base"], reverse_data, tmp_path / "pt", data=data),
              METHODS["prompt_tuning"])


@pytest.mark.parametrize("data", [{"packing": True}, {"padding_free": True}])
def test_packed_and_padding_free_runs_train(data, tiny, reverse_data, tmp_path):
    summary = train(make_recipe("lora", tiny["base"], reverse_data, tmp_path / "run", data=data,
                                train={"max_steps": 2, "batch_size": 2}), METHODS["lora"])
    assert summary["training"]["steps"] == 2
    weights = load_file(tmp_path / "run" / "adapter" / "adapter_model.safetensors")
    assert any(w.abs().sum() > 0 for k, w in weights.items() if "lora_B" in k)
