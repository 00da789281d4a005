"""Evaluation: metrics, and the `eval` command's table and JSON for base vs adapter (+ forgetting)."""

from __future__ import annotations

import json

import pytest

from tests.training.conftest import write_jsonl
from training.__main__ import main
from training.evaluation.held_out import METRICS, rouge_l, table


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


def test_table_shows_few_shot_rows_and_served_results_without_perplexity():
    side = {"exact_match": 0.5, "perplexity": None, "examples": 4}
    result = {"metric": "exact_match", "server": {"url": "http://127.0.0.1:8000"},
              "task": {"base": side, "base (3-shot)": {**side, "exact_match": 0.75, "shots": 3, "shots_used": 2.5,
                                                       "shot_budget": 512}, "tuned": side}}
    lines = table(result).splitlines()
    assert lines[2:5] == ["| task | base | 0.500 | - | 4 |", "| task | base (3-shot) | 0.750 | - | 4 |",
                          "| task | tuned | 0.500 | - | 4 |"]
    assert "base (3-shot): 2.50 shots used on average (prompts of at most 512 tokens)" in lines
    assert any("perplexity is not available through the server" in line for line in lines)


def test_eval_command_scores_the_base_with_few_shot_prompts(tiny, tmp_path, capsys):
    task = write_jsonl(tmp_path / "task.jsonl", [{"instruction": f"Reverse the word: {w}", "output": w[::-1]}
                                                 for w in ("tiger", "apple", "river")])
    train = write_jsonl(tmp_path / "train.jsonl", [{"instruction": f"Reverse the word: {w}", "output": w[::-1]}
                                                   for w in ("tiger", "lucky", "stone", "cloud")])
    out = tmp_path / "eval.json"
    assert main(["eval", "--base", str(tiny["base"]), "--adapter", str(tiny["lora-a"]), "--data", str(task),
                 "--shots", "0,1,3", "--shots-from", str(train), "--max-new-tokens", "4", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["task"]
    assert list(rows) == ["base", "base (0-shot)", "base (1-shot)", "base (3-shot)", "tuned"]
    # 0 shots is the base's own prompt: the same answers and perplexity.
    assert rows["base (0-shot)"]["predictions"] == rows["base"]["predictions"]
    assert rows["base (0-shot)"]["perplexity"] == rows["base"]["perplexity"]
    assert [rows[f"base ({k}-shot)"]["shots_used"] for k in (0, 1, 3)] == [0, 1, 3]
    # Solved examples in the prompt change what the base predicts the answer to be.
    assert rows["base (3-shot)"]["perplexity"] != rows["base"]["perplexity"]
    printed = capsys.readouterr().out
    assert "| task | base (3-shot) |" in printed and "3.00 shots used on average" in printed


@pytest.mark.parametrize("adapter", ["prompt-a", "lora-a"])
def test_batched_generation_equals_one_prompt_at_a_time(tiny, adapter):
    # Prompts of several lengths in one call: each answer must be PEFT's answer to that prompt
    # alone (a soft prompt behind left padding would see its rows at other positions).
    from tests import oracle
    from training.evaluation.held_out import generate, load_tuned

    tok = oracle.tokenizer(tiny["base"])
    prompts = [tok("Reverse the word: " + w).input_ids for w in ("sun", "planet", "a b c d e f", "go", "river")]
    answers = generate(load_tuned(tiny["base"], tiny[adapter]), tok, prompts, max_new_tokens=6, batch_size=2)
    assert answers == [tok.decode(oracle.greedy(tiny["base"], p, 6, tiny[adapter]), skip_special_tokens=True)
                       for p in prompts]
