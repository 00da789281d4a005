"""Preference rows -> pairs: labelled pairs, rankings, chat prompts, clear errors, splits by prompt."""

from __future__ import annotations

import json

import pytest

from training.data.records import BadRow
from training.rlhf.preferences import (
    PreferenceDataConfig,
    load_preferences,
    pairs_from_row,
    read_preferences,
    render_prompt,
)
from training.templates import resolve_template


def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_pair_and_ranking():
    (pair,) = pairs_from_row({"prompt": "Hi", "chosen": "Hello!", "rejected": "What."}, "f:1")
    assert (pair.prompt, pair.chosen, pair.rejected) == ("Hi", "Hello!", "What.")
    ranked = pairs_from_row({"prompt": "Hi", "responses": ["a", "b", "c"]}, "f:2")
    # best first: every (better, worse) pair, 3·2/2 = 3
    assert [(p.chosen, p.rejected) for p in ranked] == [("a", "b"), ("a", "c"), ("b", "c")]


def test_a_tie_or_both_bad_is_read_and_gives_no_pair():
    for verdict in ("tie", "both_bad"):
        assert pairs_from_row({"prompt": "Hi", "responses": ["a", "a"], "verdict": verdict}, "f:1") == []
    with pytest.raises(BadRow, match="needs `responses`"):
        pairs_from_row({"prompt": "Hi", "verdict": "tie"}, "f:3")
    with pytest.raises(BadRow, match=r"responses\[1\]` is empty"):
        pairs_from_row({"prompt": "Hi", "responses": ["a", " "], "verdict": "tie"}, "f:4")


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


@pytest.mark.parametrize("row, message", [
    ({"chosen": "a", "rejected": "b"}, "missing `prompt`"),
    ({"prompt": "p", "chosen": "a"}, "missing ['rejected']"),
    ({"prompt": "p", "chosen": "a", "rejected": "a"}, "identical"),
    ({"prompt": "p", "chosen": " ", "rejected": "a"}, "`chosen` is empty"),
    ({"prompt": "p", "responses": ["only one"]}, "at least 2"),
    ({"prompt": "p", "responses": ["a", "a"]}, "duplicates"),
    ({"prompt": [{"role": "assistant", "content": "x"}], "chosen": "a", "rejected": "b"}, "end with a user turn"),
    ({"prompt": "p", "chosen": 3, "rejected": "b"}, "must be a string"),
    (["not", "an", "object"], "JSON object"),
])
def test_bad_rows_name_the_line(row, message):
    with pytest.raises(BadRow) as info:
        pairs_from_row(row, "data.jsonl:7")
    assert "data.jsonl:7" in str(info.value) and message in str(info.value)


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
