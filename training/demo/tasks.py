"""The demo's synthetic tasks and the data files built from them (chat `messages` rows).

    base tasks (pretraining): reverse a word, uppercase three words, count words, review sentiment
    LoRA task (new):          first letters of four words            -> demo-firstletters-lora
    QLoRA task (new):         reverse the order of three words       -> demo-qlora
    soft prompt (behaviour):  base tasks answered with "Sure! " first -> demo-polite-softprompt
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

from training.tiny.corpus import TASKS as TINY_TASKS
from training.tiny.corpus import WORDS

Task = Callable[[random.Random], tuple[str, str]]

GOOD = "great lovely wonderful excellent delightful perfect".split()
BAD = "awful terrible boring horrible dreadful poor".split()


def _sentiment(rng: random.Random) -> tuple[str, str]:
    good = rng.random() < 0.5
    word = rng.choice(GOOD if good else BAD)
    thing = rng.choice(WORDS)
    return f"Sentiment of the review: \"The {thing} was {word}.\"", "positive" if good else "negative"


def _reverse_words(rng: random.Random) -> tuple[str, str]:
    words = [rng.choice(WORDS) for _ in range(3)]
    return f"Reverse the order of: {' '.join(words)}", " ".join(reversed(words))


TASKS: dict[str, Task] = {
    "reverse": TINY_TASKS["reverse"],
    "uppercase": TINY_TASKS["uppercase"],
    "count_words": TINY_TASKS["count_words"],
    "sentiment": _sentiment,
    "first_letters": TINY_TASKS["first_letters"],
    "reverse_words": _reverse_words,
}
BASE_TASKS = ("reverse", "uppercase", "count_words", "sentiment")
POLITE_PREFIX = "Sure! "


def pairs(tasks: tuple[str, ...], n: int, seed: int, exclude: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """`n` (prompt, answer) pairs, round-robin over `tasks`, skipping prompts in `exclude`."""
    rng = random.Random(seed)
    out: list[tuple[str, str]] = []
    while len(out) < n:
        prompt, answer = TASKS[tasks[len(out) % len(tasks)]](rng)
        if prompt not in exclude:
            out.append((prompt, answer))
    return out


def write_chat(path: Path, rows: list[tuple[str, str]], prefix: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for prompt, answer in rows:
            f.write(json.dumps({"messages": [{"role": "user", "content": prompt},
                                             {"role": "assistant", "content": prefix + answer}]}) + "\n")
    return path


def write_demo_data(root: Path, seed: int = 0) -> dict[str, Path]:
    """All demo data files; held-out sets never share a prompt with training sets."""
    files = {}

    def split(name: str, tasks: tuple[str, ...], n_train: int, n_test: int, task_seed: int, prefix: str = "",
              strict: bool = True):
        # Strict: no test prompt appears in training (new tasks have ~10^6+ distinct prompts). The base
        # tasks have few (one word of ~100 to reverse), so their test set measures retention instead.
        test = pairs(tasks, n_test, seed * 1000 + task_seed)
        exclude = frozenset(p for p, _ in test) if strict else frozenset()
        train = pairs(tasks, n_train, seed * 1000 + task_seed + 500, exclude)
        files[f"{name}-train"] = write_chat(root / f"{name}-train.jsonl", train, prefix)
        files[f"{name}-test"] = write_chat(root / f"{name}-test.jsonl", test, prefix)

    split("base", BASE_TASKS, 30000, 400, 1, strict=False)
    split("first-letters", ("first_letters",), 6000, 200, 2)
    split("reverse-words", ("reverse_words",), 6000, 200, 3)
    split("polite", BASE_TASKS, 4000, 200, 4, prefix=POLITE_PREFIX, strict=False)
    return files
