"""Every method trains for a few steps on the tiny model: trained weights change, frozen ones do not,
and recipes whose result the server could not load are refused before training."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from tests.training.conftest import bits, make_recipe
from training import devices
from training.methods import METHODS
from training.methods.common import Refused, train


def base_state(base) -> dict[str, torch.Tensor]:
    return load_file(str(base / "model.safetensors"))


@pytest.mark.parametrize("command", ["lora", "qlora"])
def test_lora_methods_train_an_adapter_and_leave_the_base_alone(command, tiny, reverse_data, tmp_path):
    before = base_state(tiny["base"])
    recipe = make_recipe(command, tiny["base"], reverse_data, tmp_path / command, lora={"rank": 8})
    summary = train(recipe, METHODS[command])
    weights = load_file(str(tmp_path / command / "adapter" / "adapter_model.safetensors"))
    b = [v for k, v in weights.items() if "lora_B" in k]
    assert b and all(t.abs().sum() > 0 for t in b)  # B starts at zero: nonzero means it trained
    assert all(t.dtype == torch.float32 for t in weights.values())  # the base's dtype
    after = base_state(tiny["base"])
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert summary["training"]["steps"] == 4
    config = json.loads((tmp_path / command / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 8 and not config["modules_to_save"] and not config["use_dora"]


def test_trainer_keeps_frozen_weights_in_memory_too(tiny, reverse_data, tmp_path):
    """The in-memory base under the adapter is unchanged (not just the file on disk)."""
    from transformers import AutoTokenizer
    from trl import SFTTrainer

    from training.data import load_splits
    from training.methods.common import sft_config

    recipe = make_recipe("lora", tiny["base"], reverse_data, tmp_path / "mem")
    model = METHODS["lora"].prepare(AutoModelForCausalLM.from_pretrained(tiny["base"]), recipe, None)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    lora_a = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    tok = AutoTokenizer.from_pretrained(tiny["base"])
    splits = load_splits(recipe.data, tok)
    SFTTrainer(model=model, args=sft_config(recipe, tmp_path / "mem", False), train_dataset=splits.train,
               processing_class=tok).train()
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    assert all(not torch.equal(p, lora_a[n]) for n, p in model.named_parameters() if n in lora_a)


def test_prompt_tuning_trains_only_the_soft_prompt(tiny, reverse_data, tmp_path):
    recipe = make_recipe("prompt_tuning", tiny["base"], reverse_data, tmp_path / "pt",
                         prompt_tuning={"num_virtual_tokens": 4, "init_text": "Reverse it"})
    train(recipe, METHODS["prompt_tuning"])
    weights = load_file(str(tmp_path / "pt" / "adapter" / "adapter_model.safetensors"))
    assert list(weights) == ["prompt_embeddings"] and weights["prompt_embeddings"].shape == (4, 128)
    embed = base_state(tiny["base"])["model.embed_tokens.weight"]
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(tiny["base"])("Reverse it", add_special_tokens=False).input_ids
    init = embed[(ids * 4)[:4]]
    assert not torch.allclose(weights["prompt_embeddings"], init)  # moved away from the text init


@pytest.fixture(scope="module")
def bf16_base(tiny, tmp_path_factory):
    """The tiny base stored in bfloat16, the dtype real checkpoints ship in."""
    out = tmp_path_factory.mktemp("bf16-base")
    AutoModelForCausalLM.from_pretrained(tiny["base"], dtype=torch.bfloat16).save_pretrained(out)
    for f in tiny["base"].glob("tokenizer*"):
        (out / f.name).write_bytes(f.read_bytes())
    return out


# Both branches of training.devices.native_bf16 on every host: CI's CPU has no native bf16, other
# machines of this kind do, and auto picked another dtype there (frozen weights came back rounded).
@pytest.mark.parametrize("native_bf16", [False, True], ids=["emulated-bf16", "native-bf16"])
@pytest.mark.parametrize("base_dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("command, extra", [("full", {}), ("selective", {"selective": {"last_layers": 1}})])
def test_model_methods_write_a_servable_model_directory(command, extra, base_dtype, native_bf16, tiny, bf16_base,
                                                         reverse_data, tmp_path, monkeypatch):
    monkeypatch.setattr(devices, "native_bf16", lambda: native_bf16)
    base = tiny["base"] if base_dtype == "float32" else bf16_base
    recipe = make_recipe(command, base, reverse_data, tmp_path / command, **extra)
    summary = train(recipe, METHODS[command])
    # Trained base weights have float32 master copies on every host (bf16 only as autocast).
    assert summary["training"]["dtype"] == "float32"
    out = tmp_path / command / "model"
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()
    before, after = base_state(base), load_file(str(out / "model.safetensors"))
    assert set(before) == set(after) and all(t.dtype == getattr(torch, base_dtype) for t in after.values())
    changed = {k for k in before if not torch.equal(bits(before[k]), bits(after[k]))}
    if command == "full":
        assert len(changed) == len(before)
    else:  # layer 1 of 2, final norm, lm_head; layer 0 and the embeddings frozen: bit-identical
        assert changed and all(k.startswith(("model.layers.1.", "model.norm", "lm_head")) for k in changed)
        assert any(k.startswith("model.layers.1.") for k in changed) and "lm_head.weight" in changed
    AutoModelForCausalLM.from_pretrained(out)  # loads


@pytest.mark.parametrize("command", ["full", "selective"])
def test_a_dtype_that_would_round_the_written_model_is_refused(command, tiny, bf16_base, reverse_data, tmp_path):
    with pytest.raises(Refused, match="model.dtype=bfloat16 would round the float32 base's weights"):
        train(make_recipe(command, tiny["base"], reverse_data, tmp_path / "r", model={"dtype": "bfloat16"}),
              METHODS[command])
    with pytest.raises(Refused, match="model.dtype=float16 would round the bfloat16 base's weights"):
        train(make_recipe(command, bf16_base, reverse_data, tmp_path / "r", model={"dtype": "float16"}),
              METHODS[command])
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("lora, reason", [
    ({"use_dora": True}, "DoRA"),
    ({"modules_to_save": ["lm_head"]}, "modules_to_save ['lm_head']"),
    ({"rank": 32}, "LoRA rank 32 is above the server's --max-lora-rank 16"),
    ({"bias": "all"}, "bias='all'"),
    ({"target_modules": ["embed_tokens"]}, "not linear layers"),
    ({"target_modules": ["nonexistent"]}, "matches no module"),
])
def test_unservable_lora_recipes_are_refused_before_training(lora, reason, tiny, reverse_data, tmp_path):
    recipe = make_recipe("lora", tiny["base"], reverse_data, tmp_path / "r", lora=lora)
    with pytest.raises(Refused, match="refusing this recipe") as info:
        train(recipe, METHODS["lora"])
    assert reason in str(info.value)
    assert not (tmp_path / "r").exists()  # nothing ran


def test_added_tokens_are_refused(tiny, reverse_data, tmp_path):
    import shutil

    from transformers import AutoTokenizer

    base = tmp_path / "base-with-added-tokens"
    shutil.copytree(tiny["base"], base)
    tok = AutoTokenizer.from_pretrained(base)
    tok.add_tokens([f"<new{i}>" for i in range(600)])  # more tokens than the 512 embeddings
    tok.save_pretrained(base)
    with pytest.raises(Refused, match="added tokens"):
        train(make_recipe("lora", base, reverse_data, tmp_path / "r"), METHODS["lora"])


def test_training_is_reproducible(tiny, reverse_data, tmp_path):
    for run in ("a", "b"):
        train(make_recipe("lora", tiny["base"], reverse_data, tmp_path / run), METHODS["lora"])
    a, b = (load_file(str(tmp_path / r / "adapter" / "adapter_model.safetensors")) for r in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_continues_from_the_last_checkpoint_and_logs_to_tensorboard(tiny, reverse_data, tmp_path):
    out = tmp_path / "resume"
    train(make_recipe("lora", tiny["base"], reverse_data, out), METHODS["lora"])
    assert list(out.glob("runs/*/events.out.tfevents.*"))
    summary = train(make_recipe("lora", tiny["base"], reverse_data, out, train={"max_steps": 6, "resume": True}),
                    METHODS["lora"])
    assert summary["training"]["resumed_from"].endswith("checkpoint-4")
    assert summary["training"]["steps"] == 6
