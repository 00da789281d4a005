"""Which adapter each load-test request uses: a weighted mix, or Zipf-like popularity.

A mix is written as comma-separated `target[:weight]` items; a target is `base` (the served
base model), an adapter name (LoRA or soft prompt, sent as `model`), or `lora+soft` (a LoRA with
a soft prompt stacked through the `soft_prompt` extension field). Weights default to 1.

    base:2,lora-a,lora-b,prompt-a,lora-a+prompt-a     # weighted
    zipf:1.1:lora-1,lora-2,lora-3,lora-4              # the k-th item gets weight 1/k^1.1

Usage:
    from loadtests.mix import parse_mix
    mix = parse_mix("base:2,lora-a,lora-a+prompt-a")
    target = mix.choose(random.Random(0))   # Target(model='lora-a', soft_prompt=None, ...)
"""

from __future__ import annotations

import bisect
import itertools
import random
from dataclasses import dataclass

BASE = "base"
"""The mix's name for the base model; resolved to the server's base model id by the caller."""


@dataclass(frozen=True)
class Target:
    """What one request asks for: `model`, and optionally a soft prompt stacked on it."""

    model: str
    soft_prompt: str | None = None

    @property
    def label(self) -> str:
        """The name used in stats: `lora-a`, `base`, `lora-a+prompt-a`."""
        return self.model if self.soft_prompt is None else f"{self.model}+{self.soft_prompt}"

    def request_fields(self, base_model: str) -> dict:
        """The JSON fields selecting this target; `base` becomes the server's base model id."""
        fields: dict = {"model": base_model if self.model == BASE else self.model}
        if self.soft_prompt is not None:
            fields["soft_prompt"] = self.soft_prompt
        return fields


@dataclass(frozen=True)
class AdapterMix:
    """Targets with their (normalised) probabilities."""

    targets: tuple[Target, ...]
    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.targets or len(self.targets) != len(self.weights):
            raise ValueError("a mix needs one weight per target and at least one target")
        if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
            raise ValueError("mix weights must be non-negative with a positive sum")
        total = sum(self.weights)
        object.__setattr__(self, "weights", tuple(w / total for w in self.weights))
        object.__setattr__(self, "_cumulative", tuple(itertools.accumulate(self.weights)))

    def choose(self, rng: random.Random) -> Target:
        # bisect on the cumulative weights: O(log n), and the same rng draws give the same picks.
        i = bisect.bisect_right(self._cumulative, rng.random() * self._cumulative[-1])  # type: ignore[attr-defined]
        return self.targets[min(i, len(self.targets) - 1)]

    def probability(self, label: str) -> float:
        return sum(w for t, w in zip(self.targets, self.weights) if t.label == label)


def parse_target(text: str) -> Target:
    parts = text.strip().split("+")
    if len(parts) > 2 or not all(parts):
        raise ValueError(f"bad target {text!r}: expected `name` or `lora+soft_prompt`")
    return Target(parts[0], parts[1] if len(parts) == 2 else None)


def zipf_weights(n: int, s: float) -> list[float]:
    """Normalised Zipf weights: the k-th (1-based) of n items gets 1/k^s."""
    if n < 1:
        raise ValueError("zipf needs at least one item")
    if s < 0:
        raise ValueError("zipf exponent must be >= 0")
    raw = [1.0 / k**s for k in range(1, n + 1)]
    total = sum(raw)
    return [w / total for w in raw]


def parse_mix(spec: str) -> AdapterMix:
    """`a:2,b,c+d` (weighted) or `zipf:S:a,b,c` (popularity falls as 1/rank^S)."""
    spec = spec.strip()
    if not spec:
        raise ValueError("empty adapter mix")
    if spec.startswith("zipf:"):
        _, exponent, items = spec.split(":", 2) if spec.count(":") >= 2 else (None, None, None)
        if items is None:
            raise ValueError(f"bad zipf mix {spec!r}: expected zipf:S:a,b,c")
        targets = [parse_target(t) for t in items.split(",") if t.strip()]
        return AdapterMix(tuple(targets), tuple(zipf_weights(len(targets), float(exponent))))
    targets, weights = [], []
    for item in spec.split(","):
        if not item.strip():
            continue
        name, _, weight = item.partition(":")
        targets.append(parse_target(name))
        weights.append(float(weight) if weight.strip() else 1.0)
    return AdapterMix(tuple(targets), tuple(weights))
