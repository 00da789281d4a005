"""Pairwise verdicts for `elo`: which of two answers to the same prompt is better.

    metric   the task metric against the reference answer (training.evaluation.held_out.METRICS): the higher
             score wins, equal scores tie
    reward   a reward model from `python -m training reward` (training/rlhf/reward.py): the higher
             reward wins
    server   a judge model on a running server, asked which answer is better; its reply is
             constrained to {"verdict": "A" | "B" | "tie"} (response_format json_schema with an
             enum), and each pair is asked in both orders, so a judge that favours a position
             cancels out (two matches per pair)

A judge maps (examples, answers: competitor -> one answer per example) to judgements, one per
example: the matches between every pair of competitors on it (adapter_formats.ratings.Match), so Elo's
bootstrap resamples prompts. Two competitors with the same answer always tie.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from itertools import combinations

from adapter_formats.ratings import Match
from training.data import Example
from training.evaluation.held_out import METRICS
from training.evaluation.served import Served
from training.templates import PromptTemplate

Judge = Callable[[list[Example], dict[str, list[str]]], list[list[Match]]]


def outcome(x: float, y: float) -> float:
    """a's result against b from their scores: 1 win, 0.5 tie, 0 loss."""
    return 1.0 if x > y else 0.0 if x < y else 0.5


def from_scores(answers: dict[str, list[str]], scores: dict[str, list[float]]) -> list[list[Match]]:
    """Per example, every pair of competitors compared by score (the same text: a tie)."""
    n = len(next(iter(answers.values()), []))
    return [[Match(a, b, 0.5 if answers[a][i] == answers[b][i] else outcome(scores[a][i], scores[b][i]))
             for a, b in combinations(answers, 2)] for i in range(n)]


def metric_judge(metric: str) -> Judge:
    def judge(examples: list[Example], answers: dict[str, list[str]]) -> list[list[Match]]:
        scores = {name: [METRICS[metric](text, e.response or "") for text, e in zip(texts, examples, strict=True)]
                  for name, texts in answers.items()}
        return from_scores(answers, scores)
    return judge


def reward_judge(path: str, template: PromptTemplate) -> Judge:
    """Scores with the reward model at `path`; prompts rendered with the template it was trained
    with (reward.json), else `template`."""
    from training.rlhf.preferences import render_prompt
    from training.rlhf.reward import RewardScorer

    scorer = RewardScorer(path)
    template = PromptTemplate(**scorer.template) if scorer.template else template

    def judge(examples: list[Example], answers: dict[str, list[str]]) -> list[list[Match]]:
        prompts = [render_prompt(e.messages or e.prompt or "", template, scorer.tokenizer) for e in examples]
        return from_scores(answers, {name: scorer.score(prompts, texts).tolist() for name, texts in answers.items()})
    return judge


VERDICT_SCHEMA = {"type": "object", "properties": {"verdict": {"type": "string", "enum": ["A", "B", "tie"]}},
                  "required": ["verdict"], "additionalProperties": False}
JUDGE_PROMPT = """Which answer to the question is better?

Question:
{question}

Answer A:
{a}

Answer B:
{b}

Reply with A, B or tie."""
VERDICT_WORDS = {"a": 1.0, "b": 0.0, "tie": 0.5, "equal": 0.5, "draw": 0.5}


def parse_verdict(text: str) -> float | None:
    """A's result from the judge's reply (`{"verdict": "A"}`, `A`, `Answer B is better.`, `Tie`):
    1, 0 or 0.5; None when it names none of them or more than one."""
    try:
        value = json.loads(text)
        value = value.get("verdict") if isinstance(value, dict) else value
    except ValueError:  # not JSON: read the words
        value = text
    if not isinstance(value, str):
        return None
    whole = value.strip().strip("\"'.").lower()
    if whole in VERDICT_WORDS:
        return VERDICT_WORDS[whole]
    # In a sentence only capital A and B name an answer ("a" is mostly the article).
    words = re.findall(r"\b(A|B|[Tt]ie|[Ee]qual|[Dd]raw)\b", value)
    found = {VERDICT_WORDS[w.lower()] for w in words}
    return found.pop() if len(found) == 1 else None


def server_judge(served: Served, model: str, max_tokens: int = 32) -> Judge:
    """Asks `model` on the server about each pair in both orders; unparsed replies make no match."""
    client = served.client()

    def ask(question: str, a: str, b: str) -> float | None:
        r = client.chat.completions.create(
            model=model, temperature=0, max_tokens=max_tokens,
            messages=[{"role": "user", "content": JUDGE_PROMPT.format(question=question, a=a, b=b)}],
            response_format={"type": "json_schema",
                             "json_schema": {"name": "verdict", "schema": VERDICT_SCHEMA, "strict": True}})
        return parse_verdict(r.choices[0].message.content or "")

    def judge(examples: list[Example], answers: dict[str, list[str]]) -> list[list[Match]]:
        # (example, a, b, a shown first): each pair in both orders.
        jobs = [(i, a, b, first) for i in range(len(examples)) for a, b in combinations(answers, 2)
                for first in (True, False)]

        def run(job) -> Match | None:
            i, a, b, first = job
            if answers[a][i] == answers[b][i]:
                return Match(a, b, 0.5)
            x, y = (a, b) if first else (b, a)
            verdict = ask(examples[i].prompt or "", answers[x][i], answers[y][i])
            return None if verdict is None else Match(a, b, verdict if first else 1.0 - verdict)

        with ThreadPoolExecutor(max(served.concurrency, 1)) as pool:
            matches = list(pool.map(run, jobs))
        judgements: list[list[Match]] = [[] for _ in examples]
        for (i, *_), match in zip(jobs, matches):
            if match is not None:
                judgements[i].append(match)
        return judgements
    return judge
