"""`vllm:lora_requests_info`: the gauge a gateway's endpoint picker routes LoRA requests by.

Read here the way the picker reads it (Gateway API Inference Extension, model-server protocol):
the series with the largest value (a timestamp) among those listing any adapter.
"""

from __future__ import annotations

import re
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import API_KEY

LONG = {"model": "lora-b", "prompt": "go on and on", "max_tokens": 450, "ignore_eos": True,
        "temperature": 0, "stream": True}
ENGINE_NAME = re.compile(r"\.v\d+$")  # how the engine names an adapter version


def lora_info(http) -> list[dict]:
    text = http.get("/metrics").text
    return [{**s.labels, "value": s.value} for f in text_string_to_metric_families(text)
            if f.name == "vllm:lora_requests_info" for s in f.samples]


def names(sample: dict, state: str) -> list[str]:
    return [n for n in sample[f"{state}_lora_adapters"].split(",") if n]


def picked(samples: list[dict]) -> dict | None:
    active = [s for s in samples if names(s, "running") or names(s, "waiting")]
    return max(active, key=lambda s: s["value"], default=None)


def test_running_adapter_is_listed_under_its_client_name(http, server, client):
    assert lora_info(http), "the gauge has a series from start-up on"
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {API_KEY}"}) as c:
        with c.stream("POST", "/v1/completions", json=LONG) as r:
            assert next(r.iter_lines()).startswith("data: ")  # a token out: it is in the batch
            during = lora_info(http)
    latest = picked(during)
    assert latest is not None and "lora-b" in names(latest, "running")
    assert "lora-b" not in names(latest, "waiting")  # running only: one request, no preemption
    slots = http.get("/server_info?config_format=json").json()["vllm_config"]["lora_config"]["max_loras"]
    assert latest["max_lora"] == str(slots) == "4"  # the session server's --max-loras
    assert not [n for s in during for state in ("running", "waiting") for n in names(s, state)
                if ENGINE_NAME.search(n)]

    # The stream is gone, so the engine aborts the request: once it has, an engine step (a base
    # model request) records that no adapter runs. HTTP-side bookkeeping would not show this.
    deadline = time.monotonic() + 60
    while True:
        client.completions.create(model="base", prompt="x", max_tokens=2)
        samples = lora_info(http)
        newest = max(samples, key=lambda s: s["value"])
        if not names(newest, "running") and not names(newest, "waiting"):
            break
        assert time.monotonic() < deadline, samples
    # The idle series and the one the picker reads; not one per combination ever seen.
    assert len(samples) <= 2 and picked(samples) is not None
