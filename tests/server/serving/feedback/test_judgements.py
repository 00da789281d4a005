"""Verdicts -> preference rows that training's own reader loads, with the prompt training renders
tokenising to the ids the server generated from; the leaderboard follows the file."""

from __future__ import annotations

import asyncio
import datetime

import pytest
from transformers import AutoTokenizer

from server.errors import APIError
from server.protocol.chat import ChatMessage
from server.protocol.feedback import ComparisonRequest, JudgementRequest
from server.rendering.prompts import PromptRenderer
from server.serving.feedback import Feedback
from server.serving.feedback.comparisons import Answer, Comparison
from server.serving.feedback.judgements import preference_rows, record_judgement
from training.rlhf.preferences import PreferenceDataConfig, load_preferences

NOW = datetime.datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=datetime.UTC)


def finished(texts: dict[str, str], mode: str = "chat", soft: str | None = None) -> Comparison:
    request = ComparisonRequest(prompt="Name a colour.", mode=mode, seed=3,
                                targets=[{"model": m, "soft_prompt": soft if i == 0 else None}
                                         for i, m in enumerate(texts)])
    answers = [Answer(t, text=texts[t.model], finish_reason="stop") for t in request.targets]
    return Comparison(id="cmp-test", owner="me", request=request, answers=answers, finished=True)


def verdict(**fields) -> JudgementRequest:
    return JudgementRequest(comparison_id="cmp-test", **fields)


def test_rows_carry_what_was_compared():
    (row,) = preference_rows(finished({"lora-a": "Red.", "lora-b": "Blue."}, soft="prompt-a"),
                             verdict(verdict="better", winner="B"), NOW)
    assert row == {
        "prompt": [{"role": "user", "content": "Name a colour."}],
        "chosen": "Blue.", "rejected": "Red.",
        "chosen_model": "lora-b", "rejected_model": "lora-a+prompt-a",
        "comparison_id": "cmp-test", "verdict": "better", "mode": "chat",
        "sampling": {"temperature": 1.0, "top_p": 1.0, "max_tokens": 128, "seed": 3},
        "anonymous": True, "judged_at": "2025-01-02T03:04:05.678Z",
    }


@pytest.mark.parametrize("texts, fields, why", [
    ({"a": "Same.", "b": "Same."}, {"verdict": "better", "winner": "A"}, "identical"),
    ({"a": "Red.", "b": "  "}, {"verdict": "better", "winner": "A"}, "empty"),
    ({"a": "Red.", "b": "Red.", "c": "Blue."}, {"verdict": "ranking", "ranking": ["C", "A", "B"]},
     "duplicates"),
])
def test_rows_training_would_refuse_are_refused_first(texts, fields, why):
    with pytest.raises(APIError) as caught:
        preference_rows(finished(texts), verdict(**fields), NOW)
    assert caught.value.status == 400 and why in caught.value.message
    assert "tie" in caught.value.message


def test_training_loads_the_rows_and_renders_the_prompt_the_server_used(tiny, tmp_path):
    feedback = Feedback.at(tmp_path / "preferences.jsonl")
    comparison = finished({"lora-a": "Red.", "lora-b": "Blue.", "base": "Green."})
    feedback.comparisons.add(comparison)
    result = asyncio.run(record_judgement(
        feedback, verdict(verdict="ranking", ranking=["C", "A", "B"]), "me"))
    assert result.pairs == 3 and [a.model for a in result.answers] == ["lora-a", "lora-b", "base"]

    tokenizer = AutoTokenizer.from_pretrained(tiny["base"])
    splits = load_preferences(PreferenceDataConfig(train=str(feedback.log.path), test_fraction=0),
                              tokenizer)
    assert [(r["chosen"], r["rejected"]) for r in splits.train] == [
        ("Green.", "Red."), ("Green.", "Blue."), ("Red.", "Blue.")]
    served = asyncio.run(PromptRenderer(tokenizer, 1000, 512).chat_prompt(
        [ChatMessage(role="user", content="Name a colour.")], add_generation_prompt=True))
    # Training tokenises the rendered prompt as vLLM does a prompt string (special tokens on).
    assert tokenizer(splits.train[0]["prompt"]).input_ids == served.token_ids


def test_the_leaderboard_follows_the_file(tmp_path):
    feedback = Feedback.at(tmp_path / "preferences.jsonl")
    everyone = lambda name: True  # noqa: E731

    async def judge_and_rate():
        first = await feedback.ratings.table(everyone)
        comparison = finished({"lora-a": "Red.", "lora-b": "Blue."})
        feedback.comparisons.add(comparison)
        await record_judgement(feedback, verdict(verdict="better", winner="A"), "me")
        return first, await feedback.ratings.table(everyone), await feedback.ratings.table(
            lambda name: name != "lora-b")

    empty, rated, filtered = asyncio.run(judge_and_rate())
    assert empty.data == [] and empty.judgements == 0
    assert [e.model for e in rated.data] == ["lora-a", "lora-b"] and rated.judgements == 1
    assert [e.model for e in filtered.data] == ["lora-a"]
