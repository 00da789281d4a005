"""ComparisonStore: comparisons expire, are bounded in number and belong to one key; target
names."""

from __future__ import annotations

import pytest

from server.errors import APIError
from server.protocol.feedback import ComparisonRequest
from server.serving.feedback.comparisons import (
    Answer,
    Comparison,
    ComparisonStore,
    target_name,
    target_parts,
)

REQUEST = ComparisonRequest(prompt="hi", targets=[{"model": "a"}, {"model": "b"}])


def comparison(id_: str, owner: str = "me") -> Comparison:
    return Comparison(id=id_, owner=owner, request=REQUEST,
                      answers=[Answer(t) for t in REQUEST.targets])


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_comparison_expires_after_its_ttl():
    clock = Clock()
    store = ComparisonStore(ttl=60, clock=clock)
    store.add(comparison("cmp-1"))
    clock.now = 59.9
    assert store.get("cmp-1", "me").id == "cmp-1"
    clock.now = 60.0
    with pytest.raises(APIError) as caught:
        store.get("cmp-1", "me")
    assert caught.value.status == 404 and "expired" in caught.value.message
    assert caught.value.param == "comparison_id"


def test_the_oldest_go_first_past_capacity():
    store = ComparisonStore(capacity=2)
    for i in range(3):
        store.add(comparison(f"cmp-{i}"))
    with pytest.raises(APIError):
        store.get("cmp-0", "me")
    assert [store.get(f"cmp-{i}", "me").id for i in (1, 2)] == ["cmp-1", "cmp-2"]


def test_another_keys_comparison_is_unknown():
    store = ComparisonStore()
    store.add(comparison("cmp-1", owner="me"))
    with pytest.raises(APIError) as caught:
        store.get("cmp-1", "someone else")
    assert caught.value.status == 404


def test_slots_hide_the_models_until_judged():
    c = comparison("cmp-1")
    assert [(s.label, s.model) for s in c.slots()] == [("A", None), ("B", None)]
    c.judged = True
    assert [(s.label, s.model) for s in c.slots()] == [("A", "a"), ("B", "b")]


@pytest.mark.parametrize("model, soft, name", [
    ("lora-a", None, "lora-a"), ("lora-a", "prompt-a", "lora-a+prompt-a"),
    ("base", "prompt-a", "base+prompt-a")])
def test_target_names_round_trip(model, soft, name):
    assert target_name(model, soft) == name
    assert target_parts(name, "base") == ((model, soft) if soft else (model,))


def test_a_base_model_name_with_a_plus_is_one_part():
    assert target_parts("tiny+chat", "tiny+chat") == ("tiny+chat",)
    assert target_parts("tiny+chat+prompt-a", "tiny+chat") == ("tiny+chat", "prompt-a")
