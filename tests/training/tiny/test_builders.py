"""Tests of training.tiny: determinism, tokenizer behaviour, and adapters that really act.

Run: .venv/bin/python -m pytest tests/training -q
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors import safe_open
from transformers import AutoTokenizer

from training.tiny import (
    SPECS,
    TinyLlamaSpec,
    build_base_model,
    build_lora_adapter,
    build_prompt_tuning_adapter,
    build_tokenizer,
    count_parameters,
)
from training.tiny.__main__ import main as cli_main
from training.tiny.adapters import ALL_LINEAR, load_base
from training.tiny.model import unprintable_token_ids

PROMPTS = ["Hello there", "What is 2 + 3?", "Reverse the word: apple", "The quick brown fox"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def greedy(model, tokenizer, n: int = 8) -> list[tuple[int, ...]]:
    """Greedy continuations of PROMPTS, one prompt at a time (no padding effects)."""
    outs = []
    for prompt in PROMPTS:
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            seq = model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False
            )
        outs.append(tuple(seq[0, ids.shape[1]:].tolist()))
    return outs


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory) -> Path:
    return build_base_model(tmp_path_factory.mktemp("base"), spec="test")


@pytest.fixture(scope="module")
def base_outputs(base_dir):
    return greedy(load_base(base_dir), AutoTokenizer.from_pretrained(base_dir))


# --- tokenizer -------------------------------------------------------------------------------


def test_tokenizer_is_deterministic(tokenizer):
    assert build_tokenizer().backend_tokenizer.to_str() == tokenizer.backend_tokenizer.to_str()


def test_tokenizer_special_tokens(tokenizer):
    assert len(tokenizer) == 512
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("<s>", "</s>", "<pad>")
    assert tokenizer.model_max_length == 2048
    ids = tokenizer("hello").input_ids
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1


@pytest.mark.parametrize(
    "text",
    ["héllo wörld", "日本語のテキスト", "emoji 👩‍👩‍👧 🚀", "مرحبا", "e\u0301 \x00\x07\t\r\n", "\U0010ffff", " lead  spaces "],
)
def test_any_unicode_round_trips_without_unknowns(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert tokenizer.unk_token_id is None and all(0 <= i < len(tokenizer) for i in ids)
    assert tokenizer.decode(ids) == text


def test_chat_template_renders_and_round_trips(tokenizer, base_dir):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Reverse: apple"},
        {"role": "assistant", "content": "elppa"},
        {"role": "user", "content": [{"type": "text", "text": "Uppercase: "}, {"type": "text", "text": "hi"}]},
    ]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == (
        "<s><|system|>\nBe brief.</s>\n<|user|>\nReverse: apple</s>\n"
        "<|assistant|>\nelppa</s>\n<|user|>\nUppercase: hi</s>\n<|assistant|>\n"
    )
    no_prompt = tokenizer.apply_chat_template(messages[:3], tokenize=False)
    assert no_prompt.endswith("elppa</s>\n")  # the assistant turn ends with eos
    # transformers 5 returns a BatchEncoding here; the template supplies the one bos itself.
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)["input_ids"]
    assert ids == tokenizer(text, add_special_tokens=False).input_ids
    assert ids.count(tokenizer.bos_token_id) == 1
    assert tokenizer.decode(ids) == text
    # Role markers are single in-vocab tokens, dropped by skip_special_tokens.
    assert len(tokenizer("<|assistant|>", add_special_tokens=False).input_ids) == 1
    assert tokenizer.decode(ids, skip_special_tokens=True) == "\nBe brief.\n\nReverse: apple\n\nelppa\n\nUppercase: hi\n\n"
    # The saved tokenizer behaves the same.
    reloaded = AutoTokenizer.from_pretrained(base_dir)
    assert reloaded.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) == text
    assert reloaded(text, add_special_tokens=False).input_ids == ids
    assert reloaded("hi").input_ids[0] == reloaded.bos_token_id


# --- base model --------------------------------------------------------------------------------


def test_head_dim_must_suit_vllm_cpu_attention():
    with pytest.raises(ValueError, match="head_dim"):
        TinyLlamaSpec(hidden_size=96, num_attention_heads=4, head_dim=24)
    with pytest.raises(ValueError, match="hidden_size"):
        TinyLlamaSpec(hidden_size=256, num_attention_heads=4, head_dim=32)
    assert all(spec.head_dim in (32, 64) for spec in SPECS.values())


def test_preset_sizes():
    assert count_parameters("test") < 1_000_000
    assert 4_000_000 < count_parameters("demo") < 6_000_000
    assert 22_000_000 < count_parameters("bench") < 30_000_000


def test_qwen_shaped_spec():
    """Qwen2.5-0.5B's shapes (the bench's --model-shape qwen2.5-0.5b); too big to build in a test."""
    spec = SPECS["qwen2.5-0.5b"]
    config = spec.to_config("bfloat16")
    assert (config.num_hidden_layers, config.hidden_size, config.intermediate_size) == (24, 896, 4864)
    assert (config.num_attention_heads, config.num_key_value_heads, config.head_dim) == (14, 2, 64)
    assert config.vocab_size == 151_936 and config.tie_word_embeddings and config.dtype == torch.bfloat16
    # Qwen2.5-0.5B's 494,032,768 less its q/k/v biases (24 layers * (896 + 128 + 128)).
    assert count_parameters(spec) == 494_032_768 - 24 * 1152
    assert spec.tokenizer_vocab_size == 512
    with pytest.raises(ValueError, match="tokenizer_vocab_size"):
        TinyLlamaSpec(vocab_size=512, tokenizer_vocab_size=1024)


def test_tied_model_wider_than_its_tokenizer(tmp_path):
    """The qwen2.5-0.5b spec's features at a tiny size: the rows past the tokenizer are zero (never
    emitted), one tied matrix is saved, and the output is still printable and varied."""
    spec = TinyLlamaSpec(vocab_size=1024, tokenizer_vocab_size=512, tie_word_embeddings=True)
    base = build_base_model(tmp_path / "tied", spec=spec)
    tokenizer = AutoTokenizer.from_pretrained(base)
    assert len(tokenizer) == 512
    weights = tensors(base / "model.safetensors")
    assert "lm_head.weight" not in weights
    embed = weights["model.embed_tokens.weight"]
    assert embed.shape == (1024, spec.hidden_size)
    zero_rows = set(torch.nonzero(embed.abs().sum(dim=1) == 0).flatten().tolist())
    assert zero_rows == set(unprintable_token_ids(tokenizer)) | set(range(512, 1024))
    outputs = greedy(load_base(base), tokenizer)
    assert len(set(outputs)) == len(PROMPTS) and all(max(out) < 512 for out in outputs)
    assert all("\ufffd" not in tokenizer.decode(out) for out in outputs)


def test_base_model_is_deterministic(base_dir, tmp_path):
    again = build_base_model(tmp_path / "again", spec="test")
    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json"):
        assert sha256(again / name) == sha256(base_dir / name), name
    other = build_base_model(tmp_path / "other", spec=TinyLlamaSpec(seed=1))
    assert sha256(other / "model.safetensors") != sha256(base_dir / "model.safetensors")


def test_base_checkpoint_contents(base_dir, tmp_path):
    config = json.loads((base_dir / "config.json").read_text())
    assert config["dtype"] == "float32" and config["head_dim"] == 32 and not config["tie_word_embeddings"]
    assert (config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]) == (0, 1, 2)
    assert not list(base_dir.glob("*.bin"))
    bf16 = build_base_model(tmp_path / "bf16", spec="test", dtype="bfloat16")
    assert json.loads((bf16 / "config.json").read_text())["dtype"] == "bfloat16"
    weights = tensors(bf16 / "model.safetensors")
    assert {t.dtype for t in weights.values()} == {torch.bfloat16}
    # bf16 weights are the float32 ones rounded: same seed, same model.
    f32 = tensors(base_dir / "model.safetensors")
    assert torch.equal(weights["model.embed_tokens.weight"], f32["model.embed_tokens.weight"].bfloat16())


def test_random_base_model_is_not_degenerate(base_dir, base_outputs):
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    assert len(set(base_outputs)) == len(PROMPTS)  # different prompts, different continuations
    assert all(len(set(out)) > 3 for out in base_outputs)  # not one token repeated
    special = set(tokenizer.added_tokens_decoder)
    for out in base_outputs:
        text = tokenizer.decode(out)
        # printable_output: no markers, no eos, no partial UTF-8 characters
        assert not special & set(out)
        assert "\ufffd" not in text and all(c.isprintable() or c in "\n\t" for c in text)


# --- adapters ----------------------------------------------------------------------------------


def test_lora_adapter_changes_output_and_leaves_base_untouched(base_dir, base_outputs, tmp_path):
    base_hash = sha256(base_dir / "model.safetensors")
    lora_dirs = [build_lora_adapter(base_dir, tmp_path / f"lora{seed}", seed=seed) for seed in (1, 2)]
    assert sha256(base_dir / "model.safetensors") == base_hash

    config = json.loads((lora_dirs[0] / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["lora_alpha"] == 16 and config["modules_to_save"] is None
    assert config["target_modules"] == sorted(ALL_LINEAR)
    weights = tensors(lora_dirs[0] / "adapter_model.safetensors")
    assert len(weights) == 2 * len(ALL_LINEAR) * SPECS["test"].num_hidden_layers
    assert all(t.abs().sum() > 0 for name, t in weights.items() if "lora_B" in name)  # not PEFT's zero init

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    base = load_base(base_dir)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    model = PeftModel.from_pretrained(base, lora_dirs[0])
    lora_outputs = greedy(model, tokenizer)
    assert lora_outputs != base_outputs
    with model.disable_adapter():
        assert greedy(model, tokenizer) == base_outputs
    model.load_adapter(lora_dirs[1], adapter_name="other")
    model.set_adapter("other")
    assert greedy(model, tokenizer) not in (lora_outputs, base_outputs)
    unloaded = model.unload().state_dict()
    assert all(torch.equal(unloaded[k], v) for k, v in before.items())

    again = build_lora_adapter(base_dir, tmp_path / "again", seed=1)
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        assert sha256(again / name) == sha256(lora_dirs[0] / name)


def test_prompt_tuning_adapter_shape_and_effect(base_dir, base_outputs, tmp_path):
    adapter = build_prompt_tuning_adapter(base_dir, tmp_path / "prompt", num_virtual_tokens=8, seed=1)
    weights = tensors(adapter / "adapter_model.safetensors")
    assert list(weights) == ["prompt_embeddings"]
    embeddings = weights["prompt_embeddings"]
    assert embeddings.shape == (8, SPECS["test"].hidden_size) and embeddings.dtype == torch.float32
    token_std = tensors(base_dir / "model.safetensors")["model.embed_tokens.weight"].std()
    assert 0.5 < embeddings.std() / token_std < 2  # sized like token embeddings, not PEFT's N(0, 1)

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = PeftModel.from_pretrained(load_base(base_dir), adapter)
    outputs = greedy(model, tokenizer)
    assert outputs != base_outputs and len(set(outputs)) == len(PROMPTS)

    from_text = build_prompt_tuning_adapter(base_dir, tmp_path / "text", num_virtual_tokens=4, init_text="Be brief.")
    rows = tensors(from_text / "adapter_model.safetensors")["prompt_embeddings"]
    ids = tokenizer("Be brief.", add_special_tokens=False).input_ids  # no <s> among the virtual tokens
    assert torch.equal(rows, tensors(base_dir / "model.safetensors")["model.embed_tokens.weight"][(ids * 4)[:4]])


def test_cli_builds_adapters(base_dir, tmp_path, capsys):
    cli_main(["lora", "--base", str(base_dir), "--out", str(tmp_path / "lora"), "--rank", "16", "--seed", "3"])
    cli_main(["prompt", "--base", str(base_dir), "--out", str(tmp_path / "prompt"), "--virtual-tokens", "16"])
    assert json.loads((tmp_path / "lora" / "adapter_config.json").read_text())["r"] == 16
    assert tensors(tmp_path / "prompt" / "adapter_model.safetensors")["prompt_embeddings"].shape[0] == 16
    assert capsys.readouterr().out.split() == [str(tmp_path / "lora"), str(tmp_path / "prompt")]
