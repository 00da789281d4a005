"""The adapter mix of the load tests: parsing, weights, Zipf popularity, sampling (no server)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from loadtests.mix import Target, parse_mix, zipf_weights


def test_weighted_mix_parses_targets_and_normalises_weights():
    mix = parse_mix("base:2, lora-a, lora-b:1, prompt-a, lora-a+prompt-a:0")
    assert [t.label for t in mix.targets] == ["base", "lora-a", "lora-b", "prompt-a", "lora-a+prompt-a"]
    assert mix.weights == pytest.approx((2 / 5, 1 / 5, 1 / 5, 1 / 5, 0.0))
    assert mix.targets[4] == Target("lora-a", "prompt-a")


def test_request_fields_select_model_and_stacked_soft_prompt():
    assert Target("base").request_fields("tiny") == {"model": "tiny"}
    assert Target("lora-a", "prompt-a").request_fields("tiny") == {"model": "lora-a", "soft_prompt": "prompt-a"}


def test_zipf_weights_fall_as_a_power_of_rank():
    w = zipf_weights(4, 1.0)
    assert sum(w) == pytest.approx(1.0)
    assert w[0] / w[1] == pytest.approx(2.0) and w[0] / w[3] == pytest.approx(4.0)
    assert zipf_weights(3, 0.0) == pytest.approx([1 / 3] * 3)


def test_zipf_mix_orders_popularity_as_listed():
    mix = parse_mix("zipf:1.2:lora-1,lora-2,lora-3,base")
    assert [t.label for t in mix.targets] == ["lora-1", "lora-2", "lora-3", "base"]
    assert mix.weights == pytest.approx(tuple(zipf_weights(4, 1.2)))


def test_sampling_follows_the_weights_and_is_seeded():
    mix = parse_mix("a:3,b:1,c:0")
    picks = [mix.choose(random.Random(7)).label for _ in range(3)]
    assert len(set(picks)) == 1  # same seed, same first pick
    rng = random.Random(0)
    counts = Counter(mix.choose(rng).label for _ in range(20_000))
    assert counts["c"] == 0
    assert counts["a"] / 20_000 == pytest.approx(0.75, abs=0.02)


@pytest.mark.parametrize("spec", ["", "a:-1", "a:0", "a+b+c", "+b", "zipf:1.1", "zipf:x:a", "zipf:-1:a"])
def test_bad_mixes_are_rejected(spec):
    with pytest.raises(ValueError):
        parse_mix(spec)
