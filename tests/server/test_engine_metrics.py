"""`vllm:lora_requests_info` from the engine's per-LoRA counts: client names, each adapter under
the state its requests are in, and only the series an endpoint picker reads."""

from __future__ import annotations

import os

import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from vllm.v1.metrics.prometheus import unregister_vllm_metrics
from vllm.v1.metrics.stats import SchedulerStats

from server import engine
from server.config import ServerConfig
from server.engine_metrics import LoraRequestsInfo, PrometheusStatLogger


def series(registry: CollectorRegistry) -> list[dict]:
    return [{**s.labels, "value": s.value} for m in registry.collect()
            if m.name == "vllm:lora_requests_info" for s in m.samples]


def picked(samples: list[dict]) -> dict:
    """What the Gateway API Inference Extension's picker reads: the newest series with adapters."""
    return max((s for s in samples if s["running_lora_adapters"] or s["waiting_lora_adapters"]),
               key=lambda s: s["value"])


def test_client_names_under_the_state_their_requests_are_in():
    registry = CollectorRegistry()
    info = LoraRequestsInfo(max_loras=3, registry=registry)
    [initial] = series(registry)  # max_lora is known before any request
    assert (initial["max_lora"], initial["running_lora_adapters"],
            initial["waiting_lora_adapters"]) == ("3", "", "")
    # vLLM's counts keep adapters with 0 requests in a state; versions are engine names.
    info.update(running={"sql.v3": 2, "chat.v7": 0, "sql.v9": 1, "foo.v2.v5": 1},
                waiting={"sql.v3": 0, "chat.v7": 1, "sql.v9": 0, "foo.v2.v5": 0})
    latest = picked(series(registry))
    assert latest["running_lora_adapters"] == "sql,foo.v2"  # two versions of sql: one name
    assert latest["waiting_lora_adapters"] == "chat"
    assert latest["max_lora"] == "3"


def test_only_the_newest_and_the_newest_with_adapters_are_kept():
    registry = CollectorRegistry()
    info = LoraRequestsInfo(max_loras=8, registry=registry)
    for name in ("a", "b", "c"):
        info.update(running={f"{name}.v1": 1}, waiting={})
    assert [s["running_lora_adapters"] for s in series(registry)] == ["c"]
    info.update(running={}, waiting={})  # idle: the picker keeps reading the last adapters
    samples = series(registry)
    assert len(samples) == 2 and picked(samples)["running_lora_adapters"] == "c"
    assert max(samples, key=lambda s: s["value"])["running_lora_adapters"] == ""
    info.update(running={}, waiting={"d.v2": 1})  # the newest is the one with adapters
    assert [s["waiting_lora_adapters"] for s in series(registry)] == ["d"]


@pytest.fixture
def vllm_config(tiny):
    env = dict(os.environ)  # vLLM's config checks set variables for their workers
    yield engine.engine_config(ServerConfig(model=str(tiny["base"]), dtype="float32",
                                            max_model_len=256, max_loras=5))
    os.environ.clear()
    os.environ.update(env)
    unregister_vllm_metrics()


def test_stat_logger_replaces_vllms_gauge_with_ours(vllm_config):
    logger = PrometheusStatLogger(vllm_config)
    assert logger.gauge_lora_info is None  # vLLM's own, unregistered: one family by that name
    logger.record(SchedulerStats(running_lora_adapters={"sql.v4": 1},
                                 waiting_lora_adapters={"sql.v4": 0, "chat.v2": 3}), None)
    latest = picked(series(REGISTRY))
    assert (latest["max_lora"], latest["running_lora_adapters"],
            latest["waiting_lora_adapters"]) == ("5", "sql", "chat")
    assert any(m.name == "vllm:num_requests_running" for m in REGISTRY.collect())  # vLLM's rest
