"""What the benchmark asks: the workloads (which adapter each request uses) and the prompts.

Every request completes a distinct prompt (no prefix-cache hits across requests beyond BOS) with
exactly `MAX_TOKENS` greedy tokens: the bench model never emits EOS (training.tiny's
printable_output), and contenders that accept `ignore_eos` get it as well. The exception is the
`json` workload: its requests carry `response_format` json_schema (`JSON_SCHEMA`), no
`ignore_eos` (our server refuses it with a constraint), and end when the grammar does.

`lora-48` cycles over 48 LoRAs (lora-0..47, the extra 40 built on first use) to be run with
`--max-loras` below 48, so that the engine swaps adapters; the report sets it against `lora-8`.
`cold` sends every request to an adapter the server has never seen: the contender creates
`cold-<run>-<n>` (a copy of lora-0) just before the request (Contender.cold_request); the report
sets its TTFT against `lora-1`'s (one warm adapter).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from loadtests.bench.assets import BenchAssets, lora_names

MAX_TOKENS = 64
MANY_LORAS = 48  # the `lora-48` workload's adapter count
# The `json` workload's one schema: a JSON string of exactly 61 digits. The output is `"`, 61
# digits, `"` and EOS: 64 tokens, as every other workload's requests, whatever the servers'
# numerics, because the bench tokenizer has no multi-digit tokens and no token that joins a
# quote to a digit. A top-level string has no place for JSON whitespace (xgrammar's root takes
# none around the value), so our server's whitespace bound (--json-max-whitespace) cannot
# change the output and both servers run in their default configurations. (With any
# whitespace allowed, as in an object, the random bench model writes whitespace until
# max_tokens.) Regexes with a repeat bound above 128 do not compile in xgrammar 0.2.8's cached
# compiler (e.g. `^[a-z ]{150,200}$`: a 400 from ours, a 500 from stock vLLM).
JSON_SCHEMA_NAME = "bench_digits"
JSON_SCHEMA = {"type": "string", "pattern": "^[0-9]{61}$"}
PROMPT_WORDS = 24  # ~50-60 tokens with the bench model's 512-token BPE vocab
WORDS = ("planet", "river", "stone", "garden", "window", "silver", "quiet", "market", "engine",
         "yellow", "forest", "letter", "simple", "number", "bridge", "summer", "coffee", "rabbit",
         "orange", "mirror", "signal", "winter", "pocket", "castle", "circle", "thunder", "paper")


@dataclass(frozen=True)
class Target:
    """One request's adapters: a LoRA name (None = base model) and whether the soft prompt goes
    first; and whether the output is constrained to `JSON_SCHEMA` (`response_format`). `cold`: a
    LoRA the server has never seen, made by the contender for this one request (a copy of
    `lora`, under a new name)."""

    lora: str | None = None
    soft_prompt: bool = False
    json_schema: bool = False
    cold: bool = False


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    targets: tuple[Target, ...]  # request i uses targets[i % len(targets)]
    needs_lora: bool

    def target(self, i: int) -> Target:
        return self.targets[i % len(self.targets)]


WORKLOAD_NAMES = ("base", "lora-1", "lora-8", "soft", "json", "lora-48", "cold")


def workloads(assets: BenchAssets) -> dict[str, Workload]:
    loras = assets.loras
    found = {w.name: w for w in (
        Workload("base", "base model only", (Target(),), needs_lora=False),
        Workload("lora-1", f"one LoRA ({loras[0]})", (Target(loras[0]),), needs_lora=True),
        Workload("lora-8", f"{len(loras)} LoRAs, round robin", tuple(Target(n) for n in loras), needs_lora=True),
        Workload("soft", "soft prompt (16 virtual tokens) on the base model", (Target(soft_prompt=True),),
                 needs_lora=False),
        Workload("json", "base model, response_format json_schema (JSON_SCHEMA)", (Target(json_schema=True),),
                 needs_lora=False),
        Workload("lora-48", f"{MANY_LORAS} LoRAs, round robin (with --max-loras < {MANY_LORAS}: the engine swaps)",
                 tuple(Target(n) for n in lora_names(MANY_LORAS)), needs_lora=True),
        Workload("cold", f"every request a never-seen adapter (a new copy of {loras[0]})",
                 (Target(loras[0], cold=True),), needs_lora=True),
    )}
    assert tuple(found) == WORKLOAD_NAMES
    return found


def response_format() -> dict:
    """The `response_format` of the `json` workload's requests (OpenAI structured outputs)."""
    return {"type": "json_schema", "json_schema": {"name": JSON_SCHEMA_NAME, "schema": JSON_SCHEMA}}


def prompt(i: int) -> str:
    """The i-th prompt: PROMPT_WORDS words seeded by i, so every contender sends the same sequence.

    The harness numbers requests across all cells of a contender, so no cell repeats an earlier
    cell's prompts (which a prefix cache would otherwise serve for free)."""
    rng = random.Random(i)
    return f"{i}: " + " ".join(rng.choice(WORDS) for _ in range(PROMPT_WORDS))
