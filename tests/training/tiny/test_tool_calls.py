"""The trained tool-calling LoRA: greedy PEFT decoding reproduces every scenario turn exactly.

Run: .venv/bin/python -m pytest tests/training/tiny/test_tool_calls.py -q
"""

from __future__ import annotations

import json
import re

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoTokenizer

from training.tiny import build_base_model
from training.tiny.adapters import load_base
from training.tiny.tool_calls import (
    CITIES,
    TARGET_MODULES,
    WEATHER,
    WEATHER_TOOL,
    build_tool_calling_lora,
    encode,
    examples,
)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("tool-calls")
    base = build_base_model(root / "base", spec="test", dtype="float32")
    before = load_file(base / "model.safetensors")
    adapter = build_tool_calling_lora(base, root / "adapters" / "tool-lora", seed=0)
    return {"base": base, "adapter": adapter, "before": before}


@pytest.fixture(scope="module")
def tokenizer(built):
    return AutoTokenizer.from_pretrained(built["base"])


def test_targets_are_the_templates_own_turns(tokenizer):
    exs = examples(tokenizer)
    assert len(exs) == 2 * len(CITIES)
    for city, (call, reply) in zip(CITIES, zip(exs[0::2], exs[1::2])):
        assert "<tools>" in call.prompt and call.prompt.endswith("<|assistant|>\n")
        assert call.target == (f'<tool_call>{{"name": "get_weather", "arguments": {{"city": "{city}"}}}}'
                               "</tool_call></s>")
        assert reply.target == f"It is {WEATHER[city]} in {city}.</s>"
        assert f"<tool_response>{WEATHER[city]}</tool_response>" in reply.prompt
        assert reply.prompt.startswith(call.prompt + call.target)  # one conversation, two turns


def test_adapter_is_servable(built):
    config = json.loads((built["adapter"] / "adapter_config.json").read_text())
    assert config["r"] <= 16 and config["bias"] == "none"
    assert not config["modules_to_save"] and not config["use_dora"]
    assert config["target_modules"] == sorted(TARGET_MODULES)
    weights = load_file(built["adapter"] / "adapter_model.safetensors")
    # Only LoRA A/B matrices (PEFT would also save lm_head's base weight unless told not to).
    assert all(re.search(r"\.lora_[AB]\.weight$", name) for name in weights), sorted(weights)
    assert any(name.startswith("base_model.model.lm_head.") for name in weights)
    assert {t.dtype for t in weights.values()} == {torch.float32}


def test_base_weights_unchanged(built):
    after = load_file(built["base"] / "model.safetensors")
    assert after.keys() == built["before"].keys()
    assert all(torch.equal(after[k], v) for k, v in built["before"].items())
    # The adapter's lm_head really adds the eos row the base lacks (zeroed by printable_output).
    assert torch.count_nonzero(after["lm_head.weight"][1]) == 0


@torch.no_grad()
def test_greedy_generation_reproduces_every_turn(built, tokenizer):
    model = PeftModel.from_pretrained(load_base(built["base"]), built["adapter"]).eval()
    for ex in examples(tokenizer):
        prompt, target = encode(tokenizer, ex)
        ids = torch.tensor([prompt])
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             max_new_tokens=len(target) + 8, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=tokenizer.eos_token_id)
        generated = out[0, len(prompt):].tolist()
        assert generated == target, (ex.target, tokenizer.decode(generated))
        assert tokenizer.decode(generated) == ex.target
    # What vLLM's hermes parser reads: the JSON between the tags is a valid call of WEATHER_TOOL.
    for call in examples(tokenizer)[0::2]:
        body = re.fullmatch(r"<tool_call>(.*)</tool_call></s>", call.target).group(1)
        parsed = json.loads(body)
        assert parsed["name"] == WEATHER_TOOL["function"]["name"]
        assert parsed["arguments"]["city"] in WEATHER_TOOL["function"]["parameters"]["properties"]["city"]["enum"]
