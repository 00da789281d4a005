"""Few-shot prompts: the base shown k solved training examples before the one it is asked.

    python -m training eval --base B --adapter A --data held_out.jsonl --template chat \
        --shots 0,1,3 --shots-from train.jsonl --shot-budget 1024

What in-context learning gets without any training is the baseline a fine-tune has to beat, so
`eval --shots` scores the base with k-shot prompts beside the adapter (rows `base (k-shot)`).

The shots are laid out the way the template lays out the evaluated prompt:
    chat                   earlier user/assistant turns (after any system turn of the evaluated
                           conversation), rendered by the tokenizer's chat template
    alpaca, raw, custom    earlier blocks `render(prompt) + response`, each followed by a blank
                           line, then the evaluated prompt: one text, tokenized with one bos

Drawing: for each evaluated example, max(k) training examples are drawn with a seed derived from
(seed, its index), never one whose prompt equals the evaluated prompt; the k-shot prompt takes the
first k of them, so the 3-shot prompt extends the 1-shot one. Budget: the whole prompt (shots and
evaluated prompt) has at most `budget` tokens; a shot that would pass it is dropped (later, shorter
ones may still fit), and the mean number used is reported beside the score.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from transformers import PreTrainedTokenizerBase

from training.data import Example, prompt_ids
from training.templates import PromptTemplate

SEPARATOR = "\n\n"
"""After each shot's response in text templates: a blank line, as Alpaca-style few-shot prompts do."""


@dataclass(frozen=True)
class FewShot:
    """Which k-shot prompts to score the base with, and where their shots come from."""

    counts: tuple[int, ...]
    pool: list[Example]
    """Training examples to draw shots from (prompt and response rows only)."""
    budget: int
    """Most tokens a whole few-shot prompt may have."""
    seed: int = 0


def parse_counts(spec: str) -> tuple[int, ...]:
    """`"0,1,3"` -> (0, 1, 3); each count a non-negative integer, duplicates dropped."""
    try:
        counts = tuple(dict.fromkeys(int(part) for part in spec.split(",") if part.strip()))
    except ValueError:
        raise ValueError(f"--shots must be comma-separated integers like 0,1,3, got {spec!r}") from None
    if any(k < 0 for k in counts):
        raise ValueError(f"--shots must not be negative, got {spec!r}")
    return counts


def shot_pool(examples: list[Example]) -> list[Example]:
    """The examples that can be shown as a solved example: a prompt and its response."""
    return [e for e in examples if e.prompt is not None and e.response is not None]


def draw_shots(pool: list[Example], examples: list[Example], k: int, seed: int) -> list[list[Example]]:
    """For each example, k shots from `pool` (fewer if the pool is short), none with its prompt."""
    drawn = []
    for i, example in enumerate(examples):
        eligible = [s for s in pool if s.prompt != example.prompt]
        # A string seed is hashed (sha512) by random.Random: the same draw in every process and run.
        drawn.append(random.Random(f"{seed}:{i}").sample(eligible, min(k, len(eligible))))
    return drawn


def few_shot_ids(tokenizer: PreTrainedTokenizerBase, template: PromptTemplate, example: Example,
                 shots: list[Example]) -> list[int]:
    """Prompt ids of `example` with `shots` shown before it (no shots: exactly `prompt_ids`)."""
    if template.uses_chat_template:
        turns = list(example.messages or ({"role": "user", "content": example.prompt},))
        system = 0
        while system < len(turns) and turns[system]["role"] == "system":
            system += 1
        shown = [turn for s in shots for turn in ({"role": "user", "content": s.prompt},
                                                   {"role": "assistant", "content": s.response})]
        return prompt_ids(tokenizer, template, replace(example, messages=(*turns[:system], *shown, *turns[system:])))
    blocks = "".join(template.render(s.prompt) + s.response + SEPARATOR for s in shots)
    return tokenizer(blocks + template.render(example.prompt or "")).input_ids


def fit_shots(tokenizer: PreTrainedTokenizerBase, template: PromptTemplate, example: Example,
              candidates: list[Example], budget: int) -> tuple[list[int], int]:
    """The prompt ids with as many `candidates` (in order) as fit in `budget` tokens, and how many."""
    used: list[Example] = []
    ids = few_shot_ids(tokenizer, template, example, used)
    for shot in candidates:
        trial = few_shot_ids(tokenizer, template, example, [*used, shot])
        if len(trial) <= budget:
            used.append(shot)
            ids = trial
    return ids, len(used)


def few_shot_prompts(tokenizer: PreTrainedTokenizerBase, template: PromptTemplate, examples: list[Example],
                     few_shot: FewShot) -> dict[int, tuple[list[list[int]], float]]:
    """k -> (the k-shot prompt ids of every example, mean number of shots used), for each count."""
    drawn = draw_shots(few_shot.pool, examples, max(few_shot.counts, default=0), few_shot.seed)
    result = {}
    for k in few_shot.counts:
        fitted = [fit_shots(tokenizer, template, e, shots[:k], few_shot.budget) for e, shots in zip(examples, drawn)]
        result[k] = ([ids for ids, _ in fitted], sum(n for _, n in fitted) / max(len(fitted), 1))
    return result
