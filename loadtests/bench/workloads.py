"""What the benchmark asks: the workloads (which adapter each request uses) and the prompts.

Every request completes a distinct prompt (no prefix-cache hits across requests beyond BOS) with
exactly `MAX_TOKENS` greedy tokens: the bench model never emits EOS (training.tiny's
printable_output), and contenders that accept `ignore_eos` get it as well. The exception is the
`json` workload: its requests carry `response_format` json_schema (`JSON_SCHEMA`), no
`ignore_eos` (our server refuses it with a constraint), and end when the grammar does.

`lora-N`, for any N above the assets' NUM_LORAS (e.g. `lora-48`, `lora-1000`), cycles over N
LoRAs (lora-0..N-1, the extra ones built on first use): with fewer engine adapter slots than N
(`--max-loras`), the engine swaps adapters; the report sets each against `lora-8`. Contenders
list the whole family as `MANY` ("lora-N"), since N is the run's choice, not theirs.
`cold` sends every request to an adapter the server has never seen: the contender creates
`cold-<run>-<n>` (a copy of lora-0) just before the request (Contender.cold_request); the report
sets its TTFT against `lora-1`'s (one warm adapter).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass

from loadtests.bench.assets import NUM_LORAS, BenchAssets, lora_names

MAX_TOKENS = 64
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


MANY = "lora-N"
"""The `lora-N` workloads (any N > NUM_LORAS) as one name, in WORKLOAD_NAMES and in a contender's
`workloads`; not itself a workload."""
WORKLOAD_NAMES = ("base", "lora-1", "lora-8", "soft", "json", MANY, "cold")


def many_loras(name: str) -> int | None:
    """N for a `lora-N` workload name (N > NUM_LORAS: `lora-1` and `lora-8` are workloads of their
    own over the assets' LoRAs), else None. No leading zeros: one workload, one name."""
    match = re.fullmatch(r"lora-([1-9][0-9]*)", name)
    n = int(match[1]) if match else 0
    return n if n > NUM_LORAS else None


def family(name: str) -> str:
    """The name under which WORKLOAD_NAMES and contenders list workload `name`: MANY for `lora-N`."""
    return MANY if many_loras(name) is not None else name


def supported(listed: Iterable[str], names: Iterable[str]) -> tuple[str, ...]:
    """Those of the workload `names` that a contender whose `workloads` are `listed` runs: the
    run's own names (`lora-256`, not MANY), for the harness to narrow the contender to."""
    listed = set(listed)
    return tuple(name for name in names if family(name) in listed)


def is_workload(name: str) -> bool:
    """Whether a run may ask for `name`: a fixed workload or any `lora-N` (MANY itself is none)."""
    return many_loras(name) is not None or (name != MANY and name in WORKLOAD_NAMES)


def most_loras(names: Iterable[str]) -> int | None:
    """The largest N among the `lora-N` workloads in `names` (None without one): the LoRAs a run
    must build, serve and register, the smaller `lora-N` using the first of them."""
    return max(filter(None, map(many_loras, names)), default=None)


def workloads(assets: BenchAssets, names: Iterable[str] = ()) -> dict[str, Workload]:
    """Every fixed workload (WORKLOAD_NAMES but MANY), then the `lora-N` ones among `names`."""
    loras = assets.loras
    found = {w.name: w for w in (
        Workload("base", "base model only", (Target(),), needs_lora=False),
        Workload("lora-1", f"one LoRA ({loras[0]})", (Target(loras[0]),), needs_lora=True),
        Workload("lora-8", f"{len(loras)} LoRAs, round robin", tuple(Target(n) for n in loras), needs_lora=True),
        Workload("soft", "soft prompt (16 virtual tokens) on the base model", (Target(soft_prompt=True),),
                 needs_lora=False),
        Workload("json", "base model, response_format json_schema (JSON_SCHEMA)", (Target(json_schema=True),),
                 needs_lora=False),
        Workload("cold", f"every request a never-seen adapter (a new copy of {loras[0]})",
                 (Target(loras[0], cold=True),), needs_lora=True),
    )}
    assert tuple(found) == tuple(n for n in WORKLOAD_NAMES if n != MANY)
    for name in names:
        n = many_loras(name)
        if n is not None:
            found[name] = Workload(
                name, f"{n} LoRAs, round robin (with fewer engine slots than {n}: the engine swaps)",
                tuple(Target(lora) for lora in lora_names(n)), needs_lora=True)
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
