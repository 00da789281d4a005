"""What the benchmark asks: the workloads (which adapter each request uses) and the prompts.

Every request completes a distinct prompt (no prefix-cache hits across requests beyond BOS) with
exactly `MAX_TOKENS` greedy tokens: the bench model never emits EOS (training.tiny's
printable_output), and contenders that accept `ignore_eos` get it as well.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from loadtests.bench.assets import BenchAssets

MAX_TOKENS = 64
PROMPT_WORDS = 24  # ~50-60 tokens with the bench model's 512-token BPE vocab
WORDS = ("planet", "river", "stone", "garden", "window", "silver", "quiet", "market", "engine",
         "yellow", "forest", "letter", "simple", "number", "bridge", "summer", "coffee", "rabbit",
         "orange", "mirror", "signal", "winter", "pocket", "castle", "circle", "thunder", "paper")


@dataclass(frozen=True)
class Target:
    """One request's adapters: a LoRA name (None = base model) and whether the soft prompt goes first."""

    lora: str | None = None
    soft_prompt: bool = False


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    targets: tuple[Target, ...]  # request i uses targets[i % len(targets)]
    needs_lora: bool

    def target(self, i: int) -> Target:
        return self.targets[i % len(self.targets)]


def workloads(assets: BenchAssets) -> dict[str, Workload]:
    loras = assets.loras
    return {w.name: w for w in (
        Workload("base", "base model only", (Target(),), needs_lora=False),
        Workload("lora-1", f"one LoRA ({loras[0]})", (Target(loras[0]),), needs_lora=True),
        Workload("lora-8", f"{len(loras)} LoRAs, round robin", tuple(Target(n) for n in loras), needs_lora=True),
        Workload("soft", "soft prompt (16 virtual tokens) on the base model", (Target(soft_prompt=True),),
                 needs_lora=False),
    )}


def prompt(i: int) -> str:
    """The i-th prompt: PROMPT_WORDS words seeded by i, so every contender sends the same sequence.

    The harness numbers requests across all cells of a contender, so no cell repeats an earlier
    cell's prompts (which a prefix cache would otherwise serve for free)."""
    rng = random.Random(i)
    return f"{i}: " + " ".join(rng.choice(WORDS) for _ in range(PROMPT_WORDS))
