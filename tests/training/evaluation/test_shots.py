"""Few-shot prompts: chat shots as earlier turns, text shots as earlier blocks, the token budget,
the evaluated example never shown as its own shot, the same shots for the same seed."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from training.data import Example, prompt_ids
from training.evaluation.shots import FewShot, draw_shots, few_shot_ids, few_shot_prompts, fit_shots, parse_counts
from training.templates import resolve_template


def example(i: int, prompt: str | None = None, response: str | None = None) -> Example:
    return Example(f"train.jsonl:{i}", prompt=prompt or f"Reverse the word: w{i}", response=response or f"{i}w")


POOL = [example(i) for i in range(40)]


@pytest.fixture(scope="module")
def tokenizer(tiny):
    return AutoTokenizer.from_pretrained(tiny["base"])


def test_chat_shots_are_earlier_user_and_assistant_turns(tokenizer):
    chat = resolve_template("chat")
    asked = Example("held.jsonl:1", prompt="Uppercase: a b", response="A B",
                    messages=({"role": "system", "content": "Be brief."},
                              {"role": "user", "content": "Uppercase: a b"}))
    shots = [example(1), example(2)]
    expected = tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."},
         {"role": "user", "content": "Reverse the word: w1"}, {"role": "assistant", "content": "1w"},
         {"role": "user", "content": "Reverse the word: w2"}, {"role": "assistant", "content": "2w"},
         {"role": "user", "content": "Uppercase: a b"}], add_generation_prompt=True, tokenize=False)
    assert few_shot_ids(tokenizer, chat, asked, shots) == tokenizer(expected, add_special_tokens=False).input_ids
    # No shots: exactly the prompt the adapter is evaluated (and served) on.
    assert few_shot_ids(tokenizer, chat, asked, []) == prompt_ids(tokenizer, chat, asked)


def test_text_template_shots_are_earlier_prompt_and_response_blocks(tokenizer):
    alpaca = resolve_template("alpaca")
    asked = Example("held.jsonl:1", prompt="Uppercase: a b", response="A B")
    text = ("### Instruction:\nReverse the word: w1\n\n### Response:\n1w\n\n"
            "### Instruction:\nUppercase: a b\n\n### Response:\n")
    assert few_shot_ids(tokenizer, alpaca, asked, [example(1)]) == tokenizer(text).input_ids
    assert few_shot_ids(tokenizer, resolve_template("raw"), asked, [example(1)]) == \
        tokenizer("Reverse the word: w11w\n\nUppercase: a b").input_ids


def test_budget_drops_the_shots_that_do_not_fit(tokenizer):
    alpaca = resolve_template("alpaca")
    asked = Example("held.jsonl:1", prompt="Uppercase: a b", response="A B")
    long, short = example(1, response="apple " * 40), example(2)
    alone = len(few_shot_ids(tokenizer, alpaca, asked, []))
    with_short = len(few_shot_ids(tokenizer, alpaca, asked, [short]))
    # Room for the short shot only: the long one is dropped, the short one after it still goes in.
    ids, used = fit_shots(tokenizer, alpaca, asked, [long, short], budget=with_short)
    assert used == 1 and ids == few_shot_ids(tokenizer, alpaca, asked, [short])
    assert fit_shots(tokenizer, alpaca, asked, [long, short], budget=alone) == (prompt_ids(tokenizer, alpaca, asked), 0)
    assert fit_shots(tokenizer, alpaca, asked, [long, short], budget=10_000)[1] == 2

    held = [example(100 + i) for i in range(6)]
    for budget in (40, 110, 10_000):
        prompts = few_shot_prompts(tokenizer, alpaca, held, FewShot((1, 3), POOL, budget))
        assert all(len(p) <= budget for p in prompts[3][0])
    means = {k: used for k, (_, used) in prompts.items()}
    assert means == {1: 1.0, 3: 3.0}
    tight = few_shot_prompts(tokenizer, alpaca, held, FewShot((3,), POOL, 110))[3][1]
    assert 1 < tight < 3  # ~34 tokens a shot: two fit beside the evaluated prompt


def test_the_evaluated_example_is_never_its_own_shot():
    asked = [example(i) for i in range(5)]
    # The pool holds every evaluated prompt, twice, and one other example.
    pool = [*asked, *asked, example(99)]
    for shots, e in zip(draw_shots(pool, asked, k=3, seed=0), asked):
        assert len(shots) == 3 and all(s.prompt != e.prompt for s in shots)
    only_itself = draw_shots([asked[0]] * 3 + [example(99)], asked[:1], k=2, seed=0)
    assert only_itself == [[example(99)]]


def test_shots_are_fixed_by_the_seed_and_grow_by_prefix(tokenizer):
    asked = [example(100 + i) for i in range(4)]
    assert draw_shots(POOL, asked, 3, seed=1) == draw_shots(POOL, asked, 3, seed=1)
    assert draw_shots(POOL, asked, 3, seed=1) != draw_shots(POOL, asked, 3, seed=2)
    alpaca = resolve_template("alpaca")
    prompts = few_shot_prompts(tokenizer, alpaca, asked, FewShot((1, 3), POOL, 10_000, seed=1))
    first = draw_shots(POOL, asked, 3, seed=1)
    assert prompts[1][0] == [few_shot_ids(tokenizer, alpaca, e, s[:1]) for e, s in zip(asked, first)]
    assert prompts[3][0] == [few_shot_ids(tokenizer, alpaca, e, s) for e, s in zip(asked, first)]


def test_parse_counts():
    assert parse_counts("0,1,3") == (0, 1, 3)
    assert parse_counts(" 3, 1 ,3") == (3, 1)
    for bad in ("one", "1,-2"):
        with pytest.raises(ValueError):
            parse_counts(bad)
