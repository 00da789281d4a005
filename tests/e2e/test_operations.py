"""How the server ends and how it says no: as an operator meets it, on real server processes.

Each scenario that kills or stops a server gets its own; the deadline and probe checks use the
session server.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import httpx
import psutil
import pytest

from tests.conftest import API_KEY, ServerProcess
from tests.e2e.test_disconnect import wait_for
from tests.e2e.test_metrics import scrape, value

HEADERS = {"Authorization": f"Bearer {API_KEY}"}
# Servers of their own serve the base model only.
LONG = {"model": "base", "prompt": "go on and on", "max_tokens": 400, "ignore_eos": True,
        "temperature": 0}


@pytest.fixture
def own_server(tiny, tmp_path):
    """Start a server of its own with extra flags; whatever is left of it is killed after."""
    started: list[ServerProcess] = []

    def start(*flags: str) -> ServerProcess:
        proc = ServerProcess(tiny["base"], tmp_path, tmp_path / f"server-{len(started)}.log",
                             *flags)
        started.append(proc)
        proc.wait_ready()
        proc.family = psutil.Process(proc.proc.pid).children(recursive=True)
        return proc

    yield start
    for proc in started:
        for p in [*proc.family, psutil.Process(proc.proc.pid) if proc.proc.poll() is None
                  else None]:
            if p is not None and p.is_running():
                p.kill()
        proc._log_file.close()


def stream_lines(url: str, body: dict, out: list[str]) -> threading.Thread:
    """Stream `body` in a thread, collecting the SSE data lines into `out`."""

    def run() -> None:
        try:
            with httpx.stream("POST", url, json={**body, "stream": True}, headers=HEADERS,
                              timeout=120) as r:
                out.append(f"status {r.status_code}")
                out.extend(line for line in r.iter_lines() if line.startswith("data: "))
        except httpx.HTTPError as exc:
            out.append(f"broken {type(exc).__name__}")

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_sigkill_leaves_no_engine_process_behind(own_server):
    server = own_server()
    engine = [p for p in server.family if p.is_running()]
    assert any("EngineCore" in " ".join(p.cmdline()) or "EngineCore" in p.name()
               for p in engine), [p.name() for p in engine]
    server.proc.kill()  # the server alone, as the OOM killer does
    server.proc.wait()
    assert wait_for(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE
                                    for p in engine), timeout=10), \
        [(p.pid, p.name()) for p in engine if p.is_running()]


def test_engine_death_fails_requests_cleanly_and_exits_nonzero(own_server):
    server = own_server()
    lines: list[str] = []
    thread = stream_lines(server.url + "/v1/completions", LONG, lines)
    assert wait_for(lambda: len(lines) > 3, timeout=120), lines  # a fresh server warms up
    core = next(p for p in server.family if "EngineCore" in p.name()
                or "EngineCore" in " ".join(p.cmdline()))
    core.kill()
    thread.join(30)
    assert lines[0] == "status 200" and lines[-1] == "data: [DONE]"
    error = json.loads(lines[-2].removeprefix("data: "))["error"]
    assert error["code"] == "service_unavailable", error
    assert server.proc.wait(30) == 3


def test_sigterm_drains_then_aborts_and_exits_zero(own_server):
    server = own_server("--shutdown-timeout", "2")
    # 16 sequences of 450 tokens: far longer than the drain, whatever the machine's speed.
    long_lines: list[str] = []
    long = stream_lines(server.url + "/v1/completions",
                        {**LONG, "prompt": ["go on"] * 16, "max_tokens": 450}, long_lines)
    assert wait_for(lambda: len(long_lines) > 3, timeout=120), long_lines
    short = {}
    short_thread = threading.Thread(target=lambda: short.update(r=httpx.post(
        server.url + "/v1/completions", headers=HEADERS, timeout=60,
        json={**LONG, "max_tokens": 10})))
    # The signal once the engine has taken the short request in: its prompt tokens counted (a
    # fixed pause raced the request's way in on a busy 2-core machine, and the request gauges
    # raced its 10 tokens, which can be over between two scrapes; a counter cannot be missed).
    with httpx.Client(base_url=server.url, headers=HEADERS, timeout=10) as http:
        prompts = value(scrape(http), "vllm:prompt_tokens_total")  # the long ones' only
        short_thread.start()
        assert wait_for(lambda: value(scrape(http), "vllm:prompt_tokens_total") > prompts,
                        timeout=60)
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    try:  # refused: a 503, or no listener at all
        late = httpx.post(server.url + "/v1/completions", json=LONG, headers=HEADERS, timeout=10)
        assert late.status_code == 503
    except httpx.ConnectError:
        pass
    short_thread.join(60)
    assert short["r"].status_code == 200  # finished inside the drain
    assert short["r"].json()["choices"][0]["finish_reason"] == "length"
    long.join(60)
    assert long_lines[-1] == "data: [DONE]"
    finished = [c["finish_reason"] for line in long_lines[1:-1]
                for c in json.loads(line.removeprefix("data: "))["choices"] if c["finish_reason"]]
    assert finished == ["abort"] * 16
    assert server.proc.wait(30) == 0


def test_queue_limit_answers_429_with_retry_after(own_server):
    server = own_server("--max-num-seqs", "2", "--max-queued-requests", "1")
    results: list = []

    def post(stream: bool) -> None:
        body = {**LONG, "max_tokens": 150, "stream": stream}
        with httpx.stream("POST", server.url + "/v1/completions", json=body, headers=HEADERS,
                          timeout=120) as r:
            r.read()
            results.append((stream, r.status_code, r.headers.get("retry-after"), r.text))

    threads = [threading.Thread(target=post, args=(i % 2 == 1,)) for i in range(8)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join(120)
    codes = sorted(code for _, code, _, _ in results)
    assert codes.count(200) >= 3 and codes.count(429) >= 2, codes
    for stream, code, retry_after, text in results:
        if code == 429:
            assert retry_after == "1"
            assert json.loads(text)["error"]["type"] == "rate_limit_error"
    assert any(stream and code == 429 for stream, code, _, _ in results), results
    rejected = value(scrape(httpx.Client(base_url=server.url)),
                     "server_rejected_requests_total", reason="queued_requests")
    assert rejected == codes.count(429)


def test_request_deadline_is_504_and_aborts(http, server, client):
    before = value(scrape(http), "server_requests_total", status="timeout")
    r = http.post("/v1/completions", json={**LONG, "request_timeout": 0.5, "model": "lora-a"})
    assert r.status_code == 504, r.text
    assert r.json()["error"]["type"] == "timeout_error"
    lines: list[str] = []
    stream_lines(server.url + "/v1/completions", {**LONG, "request_timeout": 1.0}, lines).join(60)
    assert lines[0] == "status 200" and lines[-1] == "data: [DONE]"
    assert json.loads(lines[-2].removeprefix("data: "))["error"]["code"] == "timeout"
    assert value(scrape(http), "server_requests_total", status="timeout") == before + 2
    assert wait_for(lambda: value(scrape(http), "vllm:num_requests_running") == 0)


def test_ready_and_health(http):
    assert http.get("/health").json() == {"status": "ok"}
    assert http.get("/ready").json() == {"status": "ready"}
