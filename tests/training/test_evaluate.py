"""Evaluation: metrics, and the `eval` command's table and JSON for base vs adapter (+ forgetting)."""

from __future__ import annotations

import json

import pytest

from tests.training.conftest import write_jsonl
from training.__main__ import main
from training.evaluate import METRICS, rouge_l


def test_metrics():
    assert METRICS["exact_match"](" olleh \n", "olleh") == 1.0
    assert METRICS["accuracy"]("Positive", "positive") == 1.0
    assert rouge_l("the cat sat", "the cat sat down") == pytest.approx(2 * 1 * 0.75 / 1.75)
    assert rouge_l("", "x") == 0.0


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
