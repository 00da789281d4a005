"""The engine's LoRA residency (`vllm:lora_adapter_loaded` and its kin), asked of the engine at each
scrape: scrapes that overlap (Prometheus and a router, or a trainer polling) each get an answer,
never an error; each served LoRA shows at its level."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from types import SimpleNamespace

from server.metrics import LoraResidency


class SlowEngine:
    """An engine whose first residency question answers when told to and whose later ones never
    do: LoRAs 1 and 2 in its cache, 2 in a slot."""

    errored = False
    vllm_config = SimpleNamespace(lora_config=SimpleNamespace(max_loras=4))

    def __init__(self) -> None:
        self.answer = asyncio.Event()
        self.calls = 0

    async def collective_rpc(self, method: str) -> list[dict]:
        self.calls += 1
        if self.calls > 1:
            await asyncio.Event().wait()
        await self.answer.wait()
        return [{"cache": [1, 2], "slots": [2]}]


def value(registry: CollectorRegistry) -> float:
    return registry.get_sample_value("vllm:num_cpu_loaded_lora_adapters")


async def test_a_scrape_that_starts_while_another_waits_does_not_break_it():
    registry, engine = CollectorRegistry(), SlowEngine()
    count = LoraResidency(registry, wait=0.2)

    async def second_scrape():
        # Starts once the first question is answered but before the first scrape has woken up
        # to read it: it asks a new question, which replaces the pending one.
        while count._pending is None or not count._pending.done():
            await asyncio.sleep(0)
        await count.sample(engine, None)

    first = asyncio.ensure_future(count.sample(engine, None))
    second = asyncio.ensure_future(second_scrape())
    await asyncio.sleep(0.01)
    engine.answer.set()
    await asyncio.gather(first, second)  # neither raises
    assert engine.calls == 2
    assert value(registry) == 2  # the first answer, kept while the second question waits


async def test_an_engine_that_does_not_answer_keeps_the_last_count_and_is_not_asked_twice():
    registry, engine = CollectorRegistry(), SlowEngine()
    count = LoraResidency(registry, wait=0.05)
    engine.answer.set()
    await count.sample(engine, None)
    assert value(registry) == 2
    await count.sample(engine, None)  # asks again: this one never answers
    await count.sample(engine, None)  # the same question still pending: not asked again
    assert engine.calls == 2
    assert value(registry) == 2


def lora(name: str, lora_id: int, rank: int = 8, pinned: bool = False) -> SimpleNamespace:
    return SimpleNamespace(name=name, pinned=pinned, lora=SimpleNamespace(rank=rank),
                           lora_request=SimpleNamespace(lora_int_id=lora_id))


async def test_every_served_lora_shows_at_its_level_with_the_engine_counts():
    registry, engine = CollectorRegistry(), SlowEngine()
    engine.answer.set()
    served = {1: lora("in-cache", 1), 2: lora("in-slot", 2, rank=16, pinned=True), 3: lora("on-disk", 3)}
    adapters = SimpleNamespace(engine_loras=lambda: served)
    residency = LoraResidency(registry)
    residency.observe_load(0.02)
    await residency.sample(engine, adapters)

    def loaded(name, level, pinned, rank):
        return registry.get_sample_value("vllm:lora_adapter_loaded", {
            "adapter_name": name, "level": level, "pinned": pinned, "rank": rank})

    assert loaded("in-cache", "cpu", "false", "8") == 1
    assert loaded("in-slot", "gpu", "true", "16") == 1
    assert loaded("on-disk", "disk", "false", "8") == 1
    assert loaded("in-slot", "cpu", "true", "16") is None  # one series per adapter, its best level
    assert registry.get_sample_value("vllm:num_gpu_loaded_lora_adapters") == 1
    assert registry.get_sample_value("vllm:num_cpu_loaded_lora_adapters") == 2
    assert registry.get_sample_value("vllm:max_gpu_lora_adapters") == 4
    assert registry.get_sample_value("vllm:lora_adapter_load_seconds_count") == 1

    del served[1]  # no longer served: its series goes at the next scrape
    residency._pending = None
    engine.calls = 0
    await residency.sample(engine, adapters)
    assert loaded("in-cache", "cpu", "false", "8") is None
