"""Contrastive pair files: tokenized as the server embeds text, split like the other recipes, bad rows named."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from training.data import DataError, describe
from training.embeddings.data import PairDataConfig, load_pairs, paraphrase_pairs
from training.tiny.corpus import WORDS


def content(text: str) -> set[str]:
    return {w.strip(".,!?").lower() for w in text.split()} & set(WORDS)


def test_paraphrase_pairs_are_deterministic_distinct_and_share_content_words():
    rows = paraphrase_pairs(50, seed=4)
    assert rows == paraphrase_pairs(50, seed=4) and rows != paraphrase_pairs(50, seed=5)
    assert len({r["positive"] for r in rows}) == 50  # one relevant candidate per anchor
    for r in rows:
        assert r["anchor"] != r["positive"]  # another template ...
        assert len(content(r["anchor"])) == 2 and content(r["anchor"]) == content(r["positive"])  # ... same words
        assert len(content(r["negative"]) & content(r["positive"])) == 1  # a hard negative: one word swapped


def test_pairs_are_tokenized_as_the_server_tokenizes_and_split(tiny, tmp_path):
    tok = AutoTokenizer.from_pretrained(tiny["base"])
    rows = [{"anchor": f"a {i}", "positive": f"p {i}", **({"negative": f"n {i}"} if i % 2 else {})}
            for i in range(40)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    splits = load_pairs(PairDataConfig(train=str(path), validation_fraction=0.1, test_fraction=0.2), tok, seed=0)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (28, 4, 8)
    by_anchor = {tuple(p.anchor): p for p in splits.train + splits.validation + splits.test}
    for r in rows:
        pair = by_anchor[tuple(tok.encode(r["anchor"]))]  # add_special_tokens: BOS first, as /v1/embeddings
        assert pair.anchor[0] == tok.bos_token_id and pair.positive == tok.encode(r["positive"])
        assert pair.negative == (tok.encode(r["negative"]) if "negative" in r else None)
    assert describe(splits.report) == "data: train 28, validation 4, test 8"


def test_bad_rows_stop_with_file_and_line_or_are_skipped_and_counted(tiny, tmp_path):
    tok = AutoTokenizer.from_pretrained(tiny["base"])
    path = tmp_path / "pairs.jsonl"
    good = [json.dumps({"anchor": f"a {i}", "positive": f"p {i}"}) for i in range(4)]
    path.write_text("\n".join([*good, '{"anchor": "x"}', json.dumps({"anchor": "word " * 40, "positive": "y"})]))
    with pytest.raises(DataError, match=r"pairs.jsonl:5: missing field 'positive'"):
        load_pairs(PairDataConfig(train=str(path), max_length=16), tok)
    splits = load_pairs(PairDataConfig(train=str(path), max_length=16, bad_rows="skip", validation_fraction=0,
                                       test_fraction=0), tok)
    assert len(splits.train) == 4
    assert splits.report["skipped_bad_rows"] == {"missing field 'positive'": 1, "too long": 1}
