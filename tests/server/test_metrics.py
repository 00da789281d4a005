"""`vllm:num_gpu_loaded_lora_adapters`, asked of the engine at each scrape: scrapes that overlap
(Prometheus and a router, or a trainer polling) each get an answer, never an error."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from server.metrics import EngineLoraCount


class SlowEngine:
    """An engine whose first `list_loras` answers when told to and whose later ones never do."""

    errored = False

    def __init__(self) -> None:
        self.answer = asyncio.Event()
        self.calls = 0

    async def list_loras(self) -> set[int]:
        self.calls += 1
        if self.calls > 1:
            await asyncio.Event().wait()
        await self.answer.wait()
        return {1, 2}


def value(registry: CollectorRegistry) -> float:
    return registry.get_sample_value("vllm:num_gpu_loaded_lora_adapters")


async def test_a_scrape_that_starts_while_another_waits_does_not_break_it():
    registry, engine = CollectorRegistry(), SlowEngine()
    count = EngineLoraCount(registry, wait=0.2)

    async def second_scrape():
        # Starts once the first question is answered but before the first scrape has woken up
        # to read it: it asks a new question, which replaces the pending one.
        while count._pending is None or not count._pending.done():
            await asyncio.sleep(0)
        await count.sample(engine)

    first = asyncio.ensure_future(count.sample(engine))
    second = asyncio.ensure_future(second_scrape())
    await asyncio.sleep(0.01)
    engine.answer.set()
    await asyncio.gather(first, second)  # neither raises
    assert engine.calls == 2
    assert value(registry) == 2  # the first answer, kept while the second question waits


async def test_an_engine_that_does_not_answer_keeps_the_last_count_and_is_not_asked_twice():
    registry, engine = CollectorRegistry(), SlowEngine()
    count = EngineLoraCount(registry, wait=0.05)
    engine.answer.set()
    await count.sample(engine)
    assert value(registry) == 2
    await count.sample(engine)  # asks again: this one never answers
    await count.sample(engine)  # the same question still pending: not asked again
    assert engine.calls == 2
    assert value(registry) == 2
