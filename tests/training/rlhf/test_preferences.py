"""Preference files -> rendered pairs: chat prompts, bad lines, splits by prompt (the rows themselves:
tests/adapter_formats/test_preferences.py)."""

from __future__ import annotations

import json

import pytest

from adapter_formats.preferences import pairs_from_row
from adapter_formats.rows import BadRow
from training.rlhf.preferences import PreferenceDataConfig, load_preferences, read_preferences, render_prompt
from training.templates import resolve_template


def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_chat_prompt_and_message_responses(tiny):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny["base"])
    messages = [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "Hi"}]
    (pair,) = pairs_from_row({"prompt": messages, "chosen": [{"role": "assistant", "content": "Hello!"}],
                              "rejected": "Go away."}, "f:1")
    assert pair.chosen == "Hello!"
    text = render_prompt(pair.prompt, resolve_template("chat"), tok)
    # The chat template's bos is dropped: the tokenizer adds it back, once.
    assert not text.startswith(tok.bos_token) and text.endswith("<|assistant|>\n")
    assert tok(text).input_ids == tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)["input_ids"]
    assert render_prompt("Hi", resolve_template("alpaca"), tok).startswith("### Instruction:\nHi")


def test_bad_json_error_or_skip(tmp_path):
    path = write(tmp_path / "p.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b"}, "{oops"])
    with pytest.raises(BadRow, match=r"p.jsonl:2: not valid JSON"):
        read_preferences(path)
    pairs, skipped = read_preferences(path, bad_rows="skip")
    assert len(pairs) == 1 and skipped == 1


def test_split_holds_out_whole_prompts(tiny, tmp_path):
    from transformers import AutoTokenizer

    rows = [{"prompt": f"q{i}", "responses": ["good", "ok", "bad"]} for i in range(20)]
    cfg = PreferenceDataConfig(train=str(write(tmp_path / "p.jsonl", rows)), test_fraction=0.25)
    splits = load_preferences(cfg, AutoTokenizer.from_pretrained(tiny["base"]))
    train_prompts, test_prompts = set(splits.prompts(splits.train)), set(splits.prompts(splits.test))
    assert len(test_prompts) == 5 and not train_prompts & test_prompts
    assert len(splits.train) == 15 * 3 and len(splits.test) == 5 * 3
