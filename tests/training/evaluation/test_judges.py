"""Pairwise judges: the task metric (ties on equal scores and equal texts) and the parsing of a
served judge's verdict."""

from __future__ import annotations

from adapter_formats.ratings import Match
from training.data import Example
from training.evaluation.judges import metric_judge, parse_verdict


def test_metric_judge_compares_every_pair_per_prompt():
    examples = [Example("x:1", prompt="Reverse: ab", response="ba"),
                Example("x:2", prompt="Reverse: cd", response="dc")]
    answers = {"right": ["ba", "dc"], "wrong": ["ab", "dc "], "other": ["xx", "yy"]}
    judgements = metric_judge("exact_match")(examples, answers)
    assert judgements == [
        [Match("right", "wrong", 1.0), Match("right", "other", 1.0), Match("wrong", "other", 0.5)],
        # "dc " is an exact match after normalizing whitespace: a tie with "dc".
        [Match("right", "wrong", 0.5), Match("right", "other", 1.0), Match("wrong", "other", 1.0)],
    ]


def test_parse_verdict_reads_json_and_plain_replies():
    assert parse_verdict('{"verdict": "A"}') == 1.0
    assert parse_verdict('{ "verdict" : "tie" }') == 0.5
    assert parse_verdict("B") == 0.0
    assert parse_verdict("Answer A is better.") == 1.0
    assert parse_verdict("It is a tie") == 0.5  # "a": an article, not answer A
    assert parse_verdict(" a. ") == 1.0
    assert parse_verdict("A is better than B") is None  # names both
    assert parse_verdict('{"verdict": 3}') is None
    assert parse_verdict("") is None
