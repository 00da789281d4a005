"""A client that goes away aborts its request in the engine."""

from __future__ import annotations

import time

import httpx

from tests.conftest import API_KEY
from tests.e2e.helpers import engine_held, warm
from tests.e2e.test_metrics import scrape, value

LONG = {"model": "lora-a", "prompt": "go on and on", "max_tokens": 450, "ignore_eos": True,
        "temperature": 0}


def aborted(http) -> float:
    return value(scrape(http), "server_finished_requests_total", status="aborted")


def running(http) -> float:
    return value(scrape(http), "vllm:num_requests_running")


def wait_for(predicate, timeout=20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_streaming_client_disconnect_aborts(http, server):
    before = aborted(http)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {API_KEY}"}) as c:
        with c.stream("POST", "/v1/completions", json={**LONG, "stream": True}) as r:
            lines = r.iter_lines()
            assert next(lines).startswith("data: ")
            # Held, the request cannot end on its own before the client leaves, on any machine.
            with engine_held(server):
                r.close()
                assert wait_for(lambda: aborted(http) == before + 1)
    assert wait_for(lambda: running(http) == 0)


def test_non_streaming_client_disconnect_aborts(http, server):
    warm(server, "lora-a")
    before = aborted(http)
    with engine_held(server):  # cannot finish before the client gives up, whatever the machine's speed
        try:
            httpx.post(server.url + "/v1/completions", json=LONG, timeout=0.5,
                       headers={"Authorization": f"Bearer {API_KEY}"})
        except httpx.ReadTimeout:
            pass
        assert wait_for(lambda: aborted(http) == before + 1)
    assert wait_for(lambda: running(http) == 0)
