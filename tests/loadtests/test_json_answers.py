"""The JSON-answer benchmark's parts that need no server: reading the held-out set, the table."""

from __future__ import annotations

import json

from loadtests import json_answers
from training.demo.tasks import write_chat


def test_examples_are_the_prompt_turns_and_the_parsed_reference(tmp_path):
    answer = {"product": "lamp", "sentiment": "positive", "stars": 2}
    path = write_chat(tmp_path / "extract-test.jsonl", [("Extract as JSON: x", json.dumps(answer))] * 3)
    rows = json_answers.examples(path, 2)
    assert rows == [([{"role": "user", "content": "Extract as JSON: x"}], answer)] * 2


def test_report_table_has_a_row_per_setting():
    row = {"json_max_whitespace": 0, "examples": 2, "tokens_mean": 17.5, "tokens_max": 19, "latency_mean_ms": 41.0,
           "latency_median_ms": 40.0, "valid": 1.0, "stopped": 1.0, "exact_match": 0.5}
    table = json_answers.render([{**row, "json_max_whitespace": 20, "tokens_mean": 30.0}, row])
    assert "| 20 | 2 | 30.0 / 19 | 41 / 40 | 1.000 | 1.000 | 0.500 |" in table
    assert "| 0 | 2 | 17.5 / 19 |" in table
