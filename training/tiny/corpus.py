"""Deterministic offline text for training the tiny tokenizer (and, later, tiny models).

Nothing can be downloaded here, so the text comes from two sources:
  * `pydoc_data.topics`: ~0.5 MB of Python documentation that ships with CPython
    (prose, code, punctuation);
  * generated instruction-like English (reverse a word, uppercase, count words, add numbers,
    first letters), so that digits, capitals and short answers are well covered.

Usage:
    from training.tiny.corpus import tokenizer_corpus, instruction_pairs
    texts = list(tokenizer_corpus(seed=0))               # same seed -> same list
    for prompt, answer in instruction_pairs(seed=1, n=3):
        print(prompt, "->", answer)
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

# Plain, short English words: answers stay a few tokens long even with a 512-entry vocab.
WORDS = (
    "apple banana cherry river mountain window garden yellow purple orange table chair "
    "happy quiet rapid small large green blue red black white water fire stone cloud "
    "music paper pencil rabbit turtle tiger lion horse bird fish tree flower forest ocean "
    "summer winter spring autumn morning evening night light dark sweet bitter salty warm "
    "cold bright simple strong gentle brave clever lucky kind friend house street city "
    "village bridge road train plane boat money letter number story dream smile "
    "laugh dance sing read write open close jump run walk swim fly"
).split()

# Each task maps a random generator to one (prompt, answer) pair.
Task = Callable[[random.Random], tuple[str, str]]


def _words(rng: random.Random, n: int) -> list[str]:
    return [rng.choice(WORDS) for _ in range(n)]


def _reverse(rng: random.Random) -> tuple[str, str]:
    word = rng.choice(WORDS)
    return f"Reverse the word: {word}", word[::-1]


def _uppercase(rng: random.Random) -> tuple[str, str]:
    words = _words(rng, 3)
    return f"Uppercase: {' '.join(words)}", " ".join(words).upper()


def _count_words(rng: random.Random) -> tuple[str, str]:
    words = _words(rng, rng.randint(1, 9))
    return f"How many words are in \"{' '.join(words)}\"?", str(len(words))


def _add(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(0, 999), rng.randint(0, 999)
    return f"What is {a} + {b}?", str(a + b)


def _first_letters(rng: random.Random) -> tuple[str, str]:
    words = _words(rng, 4)
    return f"First letters of: {', '.join(words)}.", "".join(w[0] for w in words)


TASKS: dict[str, Task] = {
    "reverse": _reverse,
    "uppercase": _uppercase,
    "count_words": _count_words,
    "add": _add,
    "first_letters": _first_letters,
}


def instruction_pairs(seed: int = 0, n: int = 1000, tasks: tuple[str, ...] | None = None) -> Iterator[tuple[str, str]]:
    """Yield `n` (prompt, answer) pairs drawn round-robin from `tasks` (default: all of TASKS)."""
    # A private Random: callers' use of the global `random` module cannot change the output.
    rng = random.Random(seed)
    names = tasks or tuple(TASKS)
    for i in range(n):
        yield TASKS[names[i % len(names)]](rng)


def python_docs() -> Iterator[str]:
    """Yield the Python documentation topics, in a fixed (sorted) order."""
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield topics[name]


def tokenizer_corpus(seed: int = 0, n_instructions: int = 5000) -> Iterator[str]:
    """Yield the tokenizer training texts: the Python docs, then generated instruction pairs."""
    yield from python_docs()
    for prompt, answer in instruction_pairs(seed, n_instructions):
        yield f"{prompt}\n{answer}\n"
