"""Where the engine holds each LoRA, as routers read it (issue 27), on the real engine.

The session server runs with 4 LoRA slots (`--max-loras 4`), a cache of 32 and `lora-a` pinned
(`--pin-adapters lora-a`). `/metrics` is parsed with prometheus_client: `vllm:lora_adapter_loaded
{adapter_name, level, pinned, rank}`, the slot and cache counts, the slots' number and the load
histogram. Cycling more adapters than the 3 unpinned slots through the engine evicts the least
recently used from their slots, never the pinned one.
"""

from __future__ import annotations

import json
import shutil

from prometheus_client.parser import text_string_to_metric_families

from tests import oracle
from tests.e2e.helpers import publish
from tests.e2e.test_lora_matches_peft import MAX_NEW, served_ids

SLOTS = 4  # the session server's --max-loras (tests/conftest.py)


def residency(http) -> tuple[dict[str, tuple[str, str, str]], dict[str, float]]:
    """({adapter: (level, pinned, rank)} from vllm:lora_adapter_loaded, {gauge: value})."""
    where, gauges = {}, {}
    for family in text_string_to_metric_families(http.get("/metrics").text):
        for s in family.samples:
            if s.name == "vllm:lora_adapter_loaded":
                assert s.value == 1 and s.labels["adapter_name"] not in where  # one series each
                where[s.labels["adapter_name"]] = (s.labels["level"], s.labels["pinned"], s.labels["rank"])
            elif s.name.startswith(("vllm:num_", "vllm:max_gpu", "vllm:lora_adapter_load_seconds_count")):
                gauges[s.name] = s.value
    return where, gauges


def rank(adapter) -> str:
    return str(json.loads((adapter / "adapter_config.json").read_text())["r"])


def test_the_pinned_adapter_keeps_its_slot_while_others_are_evicted_in_lru_order(server, http, client, tiny):
    names = [f"resident-{i}" for i in range(2 * (SLOTS - 1))]  # twice the unpinned slots
    for name in names:
        publish(tiny["lora-b"], server.adapters, name)
    _, before = residency(http)
    try:
        for name in names:  # one after the other: each takes the least recently used slot
            r = http.post("/v1/completions", json={"model": name, "prompt": "hi", "max_tokens": 1})
            assert r.status_code == 200, r.text
        where, gauges = residency(http)
        assert where["lora-a"] == ("gpu", "true", rank(tiny["lora-a"]))  # pinned at start-up, kept
        newest, evicted = names[-(SLOTS - 1):], names[:-(SLOTS - 1)]
        assert all(where[n] == ("gpu", "false", rank(tiny["lora-b"])) for n in newest), where
        assert all(where[n][0] == "cpu" for n in evicted), where  # out of a slot, still cached
        assert gauges["vllm:max_gpu_lora_adapters"] == SLOTS
        assert gauges["vllm:num_gpu_loaded_lora_adapters"] == SLOTS
        assert gauges["vllm:num_cpu_loaded_lora_adapters"] >= SLOTS + len(evicted)
        assert gauges["vllm:lora_adapter_load_seconds_count"] >= before["vllm:lora_adapter_load_seconds_count"] \
            + len(names)
        # Swapped in and out of slots, every adapter still answers with its own weights (the
        # LoRA ops patch their copies of a slot when vLLM writes it: lora_ops/slot_writes.py).
        prompt = oracle.tokenizer(tiny["base"]).encode("The quick brown fox")
        for name, source in [("lora-a", tiny["lora-a"]), *((n, tiny["lora-b"]) for n in names[::2])]:
            assert served_ids(client, name, prompt) == oracle.greedy(tiny["base"], prompt, MAX_NEW, source), name
    finally:
        for name in names:
            assert http.delete(f"/v1/adapters/{name}").status_code == 200
            shutil.rmtree(server.adapters / name)
    where, _ = residency(http)
    assert not set(names) & set(where)  # unloaded: their series are gone
