"""The `elo` command: competitors' answers judged pairwise by the task metric or a reward model,
rated with intervals, written as a markdown table, a PNG plot and JSON."""

from __future__ import annotations

import json

import torch
from peft import LoraConfig, TaskType, get_peft_model
from PIL import Image
from transformers import AutoTokenizer

from adapter_formats.ratings import leaderboard
from tests.training.conftest import write_jsonl
from training.__main__ import main
from training.data import Example, prompt_ids
from training.evaluation.held_out import generate, load_tuned
from training.evaluation.judges import metric_judge
from training.rlhf.reward import RewardScorer, load_classifier
from training.templates import resolve_template

PROMPTS = [f"Reverse the word: {w}" for w in ("tiger", "apple", "river", "lucky")]


def assert_png(path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()  # decodes the chunks: raises on a truncated or corrupt file
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) > 100


def test_the_competitor_that_is_always_right_is_rated_first():
    examples = [Example(f"x:{i}", prompt=f"q{i}", response=f"a{i}") for i in range(12)]
    answers = {"sometimes": [f"a{i}" if i % 2 else "no" for i in range(12)],
               "always": [f"a{i}" for i in range(12)],
               "never": ["no"] * 12}
    table = leaderboard(metric_judge("exact_match")(examples, answers), rounds=200)
    assert [r.model for r in table] == ["always", "sometimes", "never"]
    assert table[0].losses == 0 and table[0].wins == 12 + 6  # ties with "sometimes" on its right half


def test_elo_command_with_the_metric_judge(tiny, tmp_path, capsys):
    # References = lora-a's own greedy answers: lora-a is always right.
    tok = AutoTokenizer.from_pretrained(tiny["base"])
    alpaca = resolve_template("alpaca")
    ids = [prompt_ids(tok, alpaca, Example("x", prompt=p)) for p in PROMPTS]
    references = generate(load_tuned(tiny["base"], tiny["lora-a"]), tok, ids, 6)
    data = write_jsonl(tmp_path / "held.jsonl", [{"instruction": p, "output": r} for p, r in zip(PROMPTS, references)])
    out = tmp_path / "elo"
    assert main(["elo", "--base", str(tiny["base"]), "--adapters", str(tiny["lora-a"]), str(tiny["lora-b"]),
                 "--data", str(data), "--judge", "metric", "--max-new-tokens", "6", "--rounds", "100",
                 "--out", str(out)]) == 0
    result = json.loads((out / "elo.json").read_text())
    assert result["answers"]["lora-a"] == references
    ratings = result["ratings"]
    assert ratings[0]["model"] == "lora-a" and ratings[0]["losses"] == 0
    assert {r["model"] for r in ratings} == {"base", "lora-a", "lora-b"}
    assert all(r["low"] <= r["rating"] <= r["high"] for r in ratings)
    table = (out / "elo.md").read_text()
    assert "| 1 | lora-a |" in table and "| 1 | lora-a |" in capsys.readouterr().out
    assert_png(out / "elo.png")


def tiny_reward_model(base, out):
    """A reward model as `training reward` saves it (LoRA + `score` head, reward.json), untrained:
    a seeded head is enough to score answers differently."""
    torch.manual_seed(0)
    model = get_peft_model(load_classifier(base), LoraConfig(task_type=TaskType.SEQ_CLS, r=4, lora_alpha=8,
                                                              target_modules=["q_proj", "v_proj"]))
    model.save_pretrained(str(out))
    (out / "reward.json").write_text(json.dumps({"base_model": str(base),
                                                 "prompt_template": resolve_template("alpaca").manifest()}))
    return out


def test_elo_command_with_a_reward_model_judge(tiny, tmp_path):
    reward = tiny_reward_model(tiny["base"], tmp_path / "reward")
    data = write_jsonl(tmp_path / "held.jsonl", [{"instruction": p, "output": "x"} for p in PROMPTS])
    out = tmp_path / "elo"
    assert main(["elo", "--base", str(tiny["base"]), "--adapters", str(tiny["lora-a"]), str(tiny["lora-b"]),
                 "--data", str(data), "--judge", "reward", "--reward-model", str(reward), "--max-new-tokens", "6",
                 "--rounds", "100", "--out", str(out)]) == 0
    result = json.loads((out / "elo.json").read_text())
    # Every verdict is the reward model's: the answer it scores higher wins.
    scorer = RewardScorer(reward)
    rendered = [resolve_template("alpaca").render(p) for p in PROMPTS]
    scores = {name: scorer.score(rendered, texts) for name, texts in result["answers"].items()}
    decided = 0
    for i, judgement in enumerate(result["judgements"]):
        assert len(judgement) == 3  # every pair of three competitors
        for m in judgement:
            a, b = scores[m["a"]][i].item(), scores[m["b"]][i].item()
            if result["answers"][m["a"]][i] != result["answers"][m["b"]][i]:
                assert m["score"] == (1.0 if a > b else 0.0)
                decided += 1
    assert decided > 0
    assert_png(out / "elo.png")
    rows = [line for line in (out / "elo.md").read_text().splitlines() if line.startswith("| ")]
    assert len(rows) == 2 + 3 and {r.split(" | ")[1] for r in rows[2:]} == {"base", "lora-a", "lora-b"}
