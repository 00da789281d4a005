"""Preference rows -> pairs: labelled pairs, rankings, judged ties, clear errors naming the line."""

from __future__ import annotations

import pytest

from adapter_formats.preferences import pairs_from_row
from adapter_formats.rows import BadRow


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
