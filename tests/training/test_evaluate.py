"""Evaluation: metrics, and the `eval` command's table and JSON for base vs adapter (+ forgetting)."""

from __future__ import annotations

import json

import pytest

from tests.training.conftest import write_jsonl
from training.__main__ import main
from training.evaluate import METRICS, rouge_l, table


def test_metrics():
    assert METRICS["exact_match"](" olleh \n", "olleh") == 1.0
    assert METRICS["accuracy"]("Positive", "positive") == 1.0
    assert rouge_l("the cat sat", "the cat sat down") == pytest.approx(2 * 1 * 0.75 / 1.75)
    assert rouge_l("", "x") == 0.0
    # JSON compared as values: key order and whitespace do not matter, non-JSON scores 0.
    assert METRICS["json_match"]('{"b":1,"a":"x"}', '{"a": "x", "b": 1}') == 1.0
    assert METRICS["json_match"]('{"a": "y"}', '{"a": "x"}') == 0.0
    assert METRICS["json_match"]('{"a": "x"', '{"a": "x"}') == 0.0


def test_table_shows_task_metrics_on_the_held_out_set_only():
    side = {"exact_match": 0.5, "perplexity": 2.0, "examples": 4}
    result = {"metric": "exact_match", "task_metrics": ["json_match"],
              "task": {"base": {**side, "json_match": 0.25}, "tuned": {**side, "json_match": 1.0}},
              "forgetting": {"base": side, "tuned": side}}
    lines = table(result).splitlines()
    assert lines[0] == "| set | model | exact_match | json_match | perplexity | examples |"
    assert lines[1].count("---") == 6
    assert lines[3] == "| task | tuned | 0.500 | 1.000 | 2.000 | 4 |"
    assert lines[4] == "| forgetting | base | 0.500 | - | 2.000 | 4 |"


def test_eval_command_compares_base_and_adapter(tiny, tmp_path, capsys):
    task = write_jsonl(tmp_path / "task.jsonl", [{"instruction": "Reverse the word: tiger", "output": "regit"}] * 2)
    other = write_jsonl(tmp_path / "other.jsonl", [{"instruction": "Uppercase: a b c", "output": "A B C"}])
    out = tmp_path / "eval.json"
    assert main(["eval", "--base", str(tiny["base"]), "--adapter", str(tiny["lora-a"]), "--data", str(task),
                 "--forgetting", str(other), "--max-new-tokens", "4", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["task"]) == {"base", "tuned"} and set(result["forgetting"]) == {"base", "tuned"}
    # A random LoRA changes the model, so perplexities differ.
    assert result["task"]["base"]["perplexity"] != result["task"]["tuned"]["perplexity"]
    assert "| task | tuned |" in capsys.readouterr().out
