"""The demo's synthetic tasks and the data files built from them (chat `messages` rows).

    base tasks (pretraining): reverse a word, uppercase three words, count words, review sentiment
    LoRA task (new):          first letters of four words            -> demo-firstletters-lora
    QLoRA task (new):         reverse the order of three words       -> demo-qlora
    LoRA task (new):          review fields as JSON (EXTRACT_SCHEMA) -> demo-extract-lora
    soft prompt (behaviour):  the bare word reversed: the soft prompt is the instruction -> demo-reverse-softprompt

    classifiers (not chat):   review sentiment in 3 classes, rows {"text", "label"}  -> OUT/runs/classifier-*
    embeddings (not chat):    paraphrase pairs (training.embeddings.data)             -> demo-paraphrase-embed
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

from training.embeddings.data import write_paraphrase_data
from training.tiny.corpus import TASKS as TINY_TASKS
from training.tiny.corpus import WORDS

Task = Callable[[random.Random], tuple[str, str]]

GOOD = "great lovely wonderful excellent delightful perfect".split()
BAD = "awful terrible boring horrible dreadful poor".split()
# The classifiers' third class: words the base never saw in a review (its chat task has two classes).
NEUTRAL = "okay fine average ordinary acceptable alright".split()
OPINIONS = {"negative": BAD, "neutral": NEUTRAL, "positive": GOOD}
REVIEW_TEMPLATES = ("The {thing} was {word}.", "I found the {thing} {word}.", "My {thing} is {word}.")
# The things among WORDS (which the base reads in sentiment reviews), reviewed in the extraction
# task: the answer copies the product, and fewer products than all 90 WORDS give more examples of
# each in the few hundred steps of the demo's time budget.
PRODUCTS = tuple(
    "apple banana cherry river mountain window garden table chair water stone cloud music paper pencil "
    "rabbit turtle tiger lion horse bird fish tree flower forest ocean house street city village bridge "
    "road train plane boat money letter story dream".split())

# What the extraction task answers: the server can enforce it with response_format json_schema.
# Properties are listed in the answers' key order (grammar backends emit keys in schema order).
EXTRACT_SCHEMA = {
    "type": "object",
    "properties": {
        "product": {"type": "string"},
        "sentiment": {"type": "string", "enum": ["positive", "negative"]},
        "stars": {"type": "integer", "minimum": 1, "maximum": 5},
    },
    "required": ["product", "sentiment", "stars"],
    "additionalProperties": False,
}


def _review(rng: random.Random, things: tuple[str, ...] = WORDS) -> tuple[str, str, bool]:
    """(thing, opinion word, positive?) of a one-sentence review, shared by sentiment and extraction."""
    good = rng.random() < 0.5
    word = rng.choice(GOOD if good else BAD)
    return rng.choice(things), word, good


def _sentiment(rng: random.Random) -> tuple[str, str]:
    thing, word, good = _review(rng)
    return f"Sentiment of the review: \"The {thing} was {word}.\"", "positive" if good else "negative"


def _extract(rng: random.Random) -> tuple[str, str]:
    thing, word, good = _review(rng, PRODUCTS)
    # Stars independent of the opinion word, so that the model must copy them: when they agreed
    # with it, the LoRA guessed them from the sentiment and got 0.6 of them right in its time budget.
    stars = rng.randint(1, 5)
    answer = {"product": thing, "sentiment": "positive" if good else "negative", "stars": stars}
    # json.dumps' default separators (", ", ": ") are also what xgrammar emits when the server turns
    # off free whitespace, so guided and unguided answers look alike (compact saves only 1 token).
    return f"Extract as JSON: \"The {thing} was {word}, {stars} star{'s' * (stars > 1)}.\"", json.dumps(answer)


def _bare_reverse(rng: random.Random) -> tuple[str, str]:
    # The base's reverse task without its instruction ("Reverse the word: "), which the soft prompt
    # must carry. A soft prompt on the demo's 2.9M base can select a skill the base has, not teach
    # new output: with "Sure! " before the answers (or "!" after them) it reached 0.00 exact match
    # in its time budget, since the base never wrote those tokens and a forced "Sure! " breaks all
    # four tasks (0.00); initialised from the instruction's text this one reaches 0.90 in 300 steps.
    word = rng.choice(WORDS)
    return word, word[::-1]


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
    "extract": _extract,
    "bare_reverse": _bare_reverse,
}
BASE_TASKS = ("reverse", "uppercase", "count_words", "sentiment")


def pairs(tasks: tuple[str, ...], n: int, seed: int, exclude: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """`n` (prompt, answer) pairs, round-robin over `tasks`, skipping prompts in `exclude`."""
    rng = random.Random(seed)
    out: list[tuple[str, str]] = []
    while len(out) < n:
        prompt, answer = TASKS[tasks[len(out) % len(tasks)]](rng)
        if prompt not in exclude:
            out.append((prompt, answer))
    return out


def write_chat(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for prompt, answer in rows:
            f.write(json.dumps({"messages": [{"role": "user", "content": prompt},
                                             {"role": "assistant", "content": answer}]}) + "\n")
    return path


def labelled_reviews(n: int, seed: int, exclude: frozenset[str] = frozenset()) -> list[dict[str, str]]:
    """`n` rows {"text": "The river was great.", "label": "positive" | "negative" | "neutral"}
    (classes drawn uniformly; 3 templates x 90 things x 18 words: 4,860 distinct texts)."""
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []
    while len(rows) < n:
        label = rng.choice(sorted(OPINIONS))
        text = rng.choice(REVIEW_TEMPLATES).format(thing=rng.choice(WORDS), word=rng.choice(OPINIONS[label]))
        if text not in exclude:
            rows.append({"text": text, "label": label})
    return rows


def write_sentiment_data(root: Path, n_train: int = 3000, n_test: int = 300, seed: int = 0) -> dict[str, Path]:
    """root/sentiment-{train,test}.jsonl for the classifiers; no test text is in the training file."""
    root.mkdir(parents=True, exist_ok=True)
    test = labelled_reviews(n_test, seed * 1000 + 6)
    train = labelled_reviews(n_train, seed * 1000 + 506, frozenset(r["text"] for r in test))
    files = {}
    for name, rows in (("train", train), ("test", test)):
        files[f"sentiment-{name}"] = root / f"sentiment-{name}.jsonl"
        files[f"sentiment-{name}"].write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return files


def write_demo_data(root: Path, seed: int = 0) -> dict[str, Path]:
    """All demo data files; held-out sets never share a prompt with training sets."""
    files = {}

    def split(name: str, tasks: tuple[str, ...], n_train: int, n_test: int, task_seed: int, strict: bool = True):
        # Strict: no test prompt appears in training (the new tasks have from 1,404 to ~10^8 distinct
        # prompts). The base tasks have few (one word of ~100 to reverse), so their test set measures
        # retention instead.
        test = pairs(tasks, n_test, seed * 1000 + task_seed)
        exclude = frozenset(p for p, _ in test) if strict else frozenset()
        train = pairs(tasks, n_train, seed * 1000 + task_seed + 500, exclude)
        files[f"{name}-train"] = write_chat(root / f"{name}-train.jsonl", train)
        files[f"{name}-test"] = write_chat(root / f"{name}-test.jsonl", test)

    split("base", BASE_TASKS, 30000, 400, 1, strict=False)
    split("first-letters", ("first_letters",), 6000, 200, 2)
    split("reverse-words", ("reverse_words",), 6000, 200, 3)
    split("bare-reverse", ("bare_reverse",), 4000, 200, 4, strict=False)
    split("extract", ("extract",), 6000, 200, 5)
    # Sized for the classifiers' and the contrastive adapter's half-minute budgets (the sizes
    # training/recipes/classifier-*.yaml and contrastive-demo.yaml are written for).
    files.update(write_sentiment_data(root, 3000, 300, seed))
    paraphrases = write_paraphrase_data(root, n_train=1200, n_test=200, seed=seed)
    files.update({f"paraphrase-{k}": v for k, v in paraphrases.items()})
    return files
