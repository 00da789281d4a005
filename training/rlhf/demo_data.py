"""The demo's preference data: polite answers preferred over curt or rude ones, labelled as a person would.

The demo starting policy (an SFT model, see training/rlhf/demo.py) answers the demo's simple
tasks in a mix of styles, mostly rude or bare:

    rude     "Ugh. olleh Figure it out yourself."
    bare     "olleh"
    polite   "Sure! olleh Hope that helps."

    evasive  "Sure! Hope that helps."          (polite words, no answer)

Preference rows pair two styles of an answer to the same prompt. A simulated labeller decides
which is better as a person would: an answer beats no answer whatever its tone; then the more
polite one wins (counting polite and rude phrases, as a person skimming them would); ties are
broken at random and, like people, the labeller disagrees with itself now and then (`noise` of
the pairs are flipped). Some rows are rankings of three or four responses. The reward model must
therefore learn many phrases, not one token, and that politeness does not replace the answer.
`politeness` and `evasive` are also the demo's ground-truth judges of the policies' answers,
independent of the learned reward model.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from training.tiny.corpus import TASKS

# Tasks with many distinct prompts (reverse has only ~90), so held-out prompts are new ones.
TASK_NAMES = ("uppercase", "count_words", "first_letters", "add")
POLITE_OPEN = ("Sure! ", "Of course! ", "Happy to help: ", "Certainly. ", "Gladly! ")
POLITE_CLOSE = (" Hope that helps.", " Thank you for asking.", " Have a nice day.", "")
RUDE_OPEN = ("Ugh. ", "Whatever. ", "Obviously ", "Fine. ", "Seriously? ")
RUDE_CLOSE = (" Figure it out yourself.", " Stop asking.", " Next time think.", "")
POLITE_PHRASES = tuple(p.strip() for p in POLITE_OPEN + POLITE_CLOSE if p)
RUDE_PHRASES = tuple(p.strip() for p in RUDE_OPEN + RUDE_CLOSE if p)
STYLES = ("polite", "bare", "rude", "evasive")
# How the starting policy (SFT) answers: it rarely says anything polite.
SFT_STYLE_MIX = {"rude": 0.55, "bare": 0.3, "polite": 0.15}


def styled(answer: str, style: str, rng: random.Random) -> str:
    if style == "polite":
        return rng.choice(POLITE_OPEN) + answer + rng.choice(POLITE_CLOSE)
    if style == "evasive":
        return rng.choice(POLITE_OPEN).strip() + rng.choice(POLITE_CLOSE[:-1])
    if style == "rude":
        opener, closer = rng.choice(RUDE_OPEN), rng.choice(RUDE_CLOSE)
        if not closer and rng.random() < 0.5:
            opener, closer = "", rng.choice(RUDE_CLOSE[:-1])
        return opener + answer + closer
    return answer


def politeness(response: str) -> int:
    """Polite phrases minus rude phrases: the labeller's (and the demo's judge's) reading of a response."""
    return sum(p in response for p in POLITE_PHRASES) - sum(p in response for p in RUDE_PHRASES)


def evasive(response: str) -> bool:
    """Nothing but courtesy phrases: no answer at all."""
    rest = response
    for phrase in POLITE_PHRASES + RUDE_PHRASES:
        rest = rest.replace(phrase, "")
    return not rest.strip(" .!?:")


def human_score(response: str) -> int:
    """The labeller's preference: answering first (worth more than any tone), then politeness."""
    return politeness(response) - 10 * evasive(response)


def label(a: str, b: str, rng: random.Random, noise: float) -> tuple[str, str]:
    """(chosen, rejected) as the simulated labeller picks them."""
    sa, sb = human_score(a), human_score(b)
    better_a = sa > sb if sa != sb else rng.random() < 0.5
    if rng.random() < noise:
        better_a = not better_a
    return (a, b) if better_a else (b, a)


def prompts(n: int, seed: int, exclude: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """`n` distinct (question, answer) pairs of the demo tasks, round-robin, none in `exclude`."""
    rng = random.Random(seed)
    out: dict[str, str] = {}
    for _ in range(100 * n):
        if len(out) == n:
            break
        q, a = TASKS[TASK_NAMES[len(out) % len(TASK_NAMES)]](rng)
        if q not in exclude:
            out.setdefault(q, a)
    return list(out.items())


def preference_rows(questions: list[tuple[str, str]], seed: int, noise: float = 0.05,
                    ranked_fraction: float = 0.25) -> list[dict]:
    """One row per question: a labelled pair of two different styles, or a ranking of all three."""
    rng = random.Random(seed)
    rows = []
    for q, a in questions:
        if rng.random() < ranked_fraction:
            responses = [styled(a, s, rng) for s in STYLES if s != "evasive" or rng.random() < 0.5]
            responses.sort(key=lambda r: (-human_score(r), rng.random()))
            rows.append({"prompt": q, "responses": responses})
        else:
            s1, s2 = rng.sample(STYLES, 2, counts=(3, 3, 3, 1))  # evasive answers are rarer
            while s1 == s2:
                s1, s2 = rng.sample(STYLES, 2, counts=(3, 3, 3, 1))
            chosen, rejected = label(styled(a, s1, rng), styled(a, s2, rng), rng, noise)
            rows.append({"prompt": q, "chosen": chosen, "rejected": rejected})
    return rows


def sft_rows(questions: list[tuple[str, str]], seed: int) -> list[dict]:
    """Chat rows teaching the starting policy its (mostly impolite) mix of styles."""
    rng = random.Random(seed)
    styles, weights = zip(*SFT_STYLE_MIX.items())
    return [{"messages": [{"role": "user", "content": q},
                          {"role": "assistant", "content": styled(a, rng.choices(styles, weights)[0], rng)}]}
            for q, a in questions]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_demo_preferences(root: Path, n_train: int = 1500, n_test: int = 200, n_sft: int = 6000,
                           seed: int = 0) -> dict[str, Path]:
    """sft.jsonl (starting policy), preferences-train.jsonl, preferences-test.jsonl (held-out prompts)."""
    test_q = prompts(n_test, seed * 1000 + 1)
    held = frozenset(q for q, _ in test_q)
    train_q = prompts(n_train, seed * 1000 + 2, held)
    sft_q = prompts(n_sft, seed * 1000 + 3, held)
    return {
        "sft": write_jsonl(root / "sft.jsonl", sft_rows(sft_q, seed + 3)),
        "train": write_jsonl(root / "preferences-train.jsonl", preference_rows(train_q, seed + 1)),
        "test": write_jsonl(root / "preferences-test.jsonl", preference_rows(test_q, seed + 2, noise=0.0)),
    }
