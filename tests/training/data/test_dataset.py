"""Data: formats, templates, bad rows named by file:line, truncation counts, response-only loss."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from tests.training.conftest import write_jsonl
from training.data import DataConfig, DataError, encode, load_splits, read_examples
from training.data.encode import IGNORE
from training.templates import ALPACA, resolve_template


@pytest.fixture(scope="module")
def tok(tiny):
    return AutoTokenizer.from_pretrained(tiny["base"])


def rows(path):
    return [item for _, item in read_examples(path)]


def test_formats_normalize_to_prompt_and_response(tmp_path):
    alpaca = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "Sum", "input": "1 2", "output": "3"}])
    dolly = write_jsonl(tmp_path / "d.jsonl", [{"instruction": "Sum", "context": "1 2", "response": "3"}])
    pc = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Q", "completion": "A"}])
    chat = write_jsonl(tmp_path / "c.jsonl", [{"messages": [{"role": "user", "content": "hi"},
                                                            {"role": "assistant", "content": "hello"}]}])
    text = tmp_path / "t.txt"
    text.write_text("first para\nstill first\n\nsecond\n")
    assert rows(alpaca)[0].prompt == rows(dolly)[0].prompt == "Sum\n\n### Input:\n1 2"
    assert rows(pc)[0].response == "A"
    assert rows(chat)[0].messages == ({"role": "user", "content": "hi"},)
    assert [e.text for e in rows(text)] == ["first para\nstill first", "second"]


def test_bad_rows_name_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"instruction": "a", "output": "b"}\n'
                     b'{"instruction": "a"}\n'
                     b'{"instruction": "a", "output": "  "}\n'
                     b'{"instruction": "caf\xe9", "output": "x"}\n'
                     b'not json\n')
    reasons = [str(item) for _, item in read_examples(path)]
    assert reasons[1] == f"{path}:2: missing field 'output'"
    assert reasons[2] == f"{path}:3: empty 'output'"
    assert reasons[3].startswith(f"{path}:4: not valid UTF-8 (byte 0xe9")
    assert reasons[4].startswith(f"{path}:5: not valid JSON")


def test_bad_rows_stop_or_are_skipped_and_counted(tmp_path, tok):
    path = tmp_path / "bad.jsonl"
    write_jsonl(path, [{"instruction": f"i{i}", "output": "o"} for i in range(20)] + [{"instruction": "x"}])
    with pytest.raises(DataError, match=f"{path}:21: missing field 'output'"):
        load_splits(DataConfig(train=str(path)), tok)
    splits = load_splits(DataConfig(train=str(path), bad_rows="skip"), tok)
    assert splits.report["skipped_bad_rows"] == {"missing field 'output'": 1}
    assert splits.report["rows_read"] == 21


def test_over_long_rows_are_truncated_skipped_or_refused_with_counts(tmp_path, tok):
    long = "word " * 100
    path = write_jsonl(tmp_path / "long.jsonl", [{"instruction": "short", "output": "ok"},
                                                 {"instruction": "short", "output": long},
                                                 {"instruction": long, "output": "ok"}])
    cfg = dict(train=str(path), max_length=32, validation_fraction=0, test_fraction=0)
    report = load_splits(DataConfig(**cfg), tok).report["train"]
    assert report == {"examples": 2, "truncated": 1, "skipped_too_long": 1}  # prompt alone too long: skipped
    assert load_splits(DataConfig(**cfg, too_long="skip"), tok).report["train"]["skipped_too_long"] == 2
    with pytest.raises(DataError, match=f"{path}:[23]: .* tokens, above data.max_length=32"):
        load_splits(DataConfig(**cfg, too_long="error"), tok)


def test_loss_is_on_the_response_only_and_prompt_is_tokenized_like_the_server(tmp_path, tok):
    (example,) = rows(write_jsonl(tmp_path / "a.jsonl", [{"instruction": "Reverse: abc", "output": "cba"}]))
    enc = encode(tok, resolve_template("alpaca"), example, 64)
    prompt = tok(ALPACA.replace("{prompt}", "Reverse: abc")).input_ids  # with <s>, as /v1/completions
    assert enc.input_ids[:len(prompt)] == prompt
    assert enc.labels[:len(prompt)] == [IGNORE] * len(prompt)
    assert enc.labels[len(prompt):] == enc.input_ids[len(prompt):]
    assert enc.input_ids[-1] == tok.eos_token_id
    assert tok.decode(enc.input_ids[len(prompt):], skip_special_tokens=True) == "cba"
    everything = encode(tok, resolve_template("alpaca"), example, 64, loss_on="all")
    assert everything.labels == everything.input_ids


def test_chat_template_prompt_matches_apply_chat_template(tmp_path, tok):
    (example,) = rows(write_jsonl(tmp_path / "c.jsonl", [{"prompt": "hi", "completion": "hello"}]))
    enc = encode(tok, resolve_template("chat"), example, 64)
    expected = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                       tokenize=True, return_dict=True)["input_ids"]
    assert enc.input_ids[:len(expected)] == list(expected)
    assert enc.input_ids.count(tok.bos_token_id) == 1


def test_splits_are_seeded_and_disjoint(reverse_data, tok):
    a = load_splits(DataConfig(train=str(reverse_data), validation_fraction=0.1, test_fraction=0.1), tok, seed=1)
    b = load_splits(DataConfig(train=str(reverse_data), validation_fraction=0.1, test_fraction=0.1), tok, seed=1)
    assert [e.where for e in a.test_examples] == [e.where for e in b.test_examples]
    wheres = [{e.where for e in s} for s in (a.train_examples, a.validation_examples, a.test_examples)]
    assert sum(map(len, wheres)) == 120 and not (wheres[0] & wheres[2]) and not (wheres[1] & wheres[2])
