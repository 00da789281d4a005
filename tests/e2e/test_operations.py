"""How the server ends and how it says no: as an operator meets it, on real server processes.

Each scenario that kills or stops a server gets its own (the engine's death ends the one the queue
limit's test leaves serving); the deadline and probe checks use the session server.
"""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time

import httpx
import psutil
import pytest

from tests.conftest import API_KEY, ServerProcess
from tests.e2e.helpers import engine_held, warm
from tests.e2e.test_disconnect import wait_for
from tests.e2e.test_metrics import scrape, value

HEADERS = {"Authorization": f"Bearer {API_KEY}"}
# Servers of their own serve the base model only.
LONG = {"model": "base", "prompt": "go on and on", "max_tokens": 400, "ignore_eos": True,
        "temperature": 0}


class OwnServers:
    """Servers of their own, started with extra flags; whatever is left of them is killed after."""

    def __init__(self, tiny, directory) -> None:
        self.tiny, self.directory = tiny, directory
        self.started: list[ServerProcess] = []

    def start(self, *flags: str) -> ServerProcess:
        proc = ServerProcess(self.tiny["base"], self.directory,
                             self.directory / f"server-{len(self.started)}.log", *flags)
        self.started.append(proc)
        proc.wait_ready()
        proc.family = psutil.Process(proc.proc.pid).children(recursive=True)
        return proc

    def kill_all(self) -> None:
        for proc in self.started:
            for p in [*proc.family, psutil.Process(proc.proc.pid) if proc.proc.poll() is None
                      else None]:
                if p is not None and p.is_running():
                    p.kill()
            proc._log_file.close()


@pytest.fixture
def own_server(tiny, tmp_path):
    """Start a server of its own with extra flags (`own_server(*flags)`)."""
    servers = OwnServers(tiny, tmp_path)
    yield servers.start
    servers.kill_all()


@pytest.fixture(scope="module")
def small_queues(tiny, tmp_path_factory):
    """`small_queues()`: one server with room for 2 running and 1 queued request, for two
    scenarios (a start costs ~12 s of both cores here): the queue limit's, which leaves it
    serving, then the engine's death, which ends it. A test that finds it ended (run in another
    order) gets a new one."""
    servers = OwnServers(tiny, tmp_path_factory.mktemp("small-queues"))

    def live() -> ServerProcess:
        if not servers.started or servers.started[-1].proc.poll() is not None:
            servers.start("--max-num-seqs", "2", "--max-queued-requests", "1")
        return servers.started[-1]

    yield live
    servers.kill_all()


def stream_lines(url: str, body: dict, out: list[str],
                 first: threading.Event | None = None) -> threading.Thread:
    """Stream `body` in a thread, collecting the SSE data lines into `out`; `first` is set at the
    first data line (or when the stream ends without one)."""

    def run() -> None:
        try:
            with httpx.stream("POST", url, json={**body, "stream": True}, headers=HEADERS,
                              timeout=120) as r:
                out.append(f"status {r.status_code}")
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        out.append(line)
                        if first is not None:
                            first.set()
        except httpx.HTTPError as exc:
            out.append(f"broken {type(exc).__name__}")
        finally:
            if first is not None:
                first.set()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def refused(server, method: str, path: str, **kwargs) -> bool:
    """Whether a new request is turned away: a 503 in OpenAI's shape (a connection opened before
    uvicorn stopped listening), or no listener any more."""
    try:
        r = httpx.request(method, server.url + path, headers=HEADERS, timeout=10, **kwargs)
    except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError):
        return True  # no listener, or one closing as we connect (a reset)
    if path == "/ready":
        return r.status_code == 503
    return r.status_code == 503 and r.json()["error"]["type"] == "service_unavailable"


def finish_reasons(lines: list[str]) -> list[str]:
    return [c["finish_reason"] for line in lines[1:-1] if line.startswith("data: {")
            for c in json.loads(line.removeprefix("data: ")).get("choices", []) if c["finish_reason"]]


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


def test_sigterm_refuses_new_requests_and_aborts_what_outlasts_the_drain(own_server):
    server = own_server("--shutdown-timeout", "2")
    lines: list[str] = []
    first = threading.Event()
    long = stream_lines(server.url + "/v1/completions", {**LONG, "prompt": ["go on"] * 4}, lines, first)
    assert first.wait(120) and lines[0] == "status 200", lines
    # Held, the streams cannot finish inside the drain, however fast the machine (a faster CPU
    # finished 16 x 450 tokens inside this 2 s drain); the drain's timeout must end them.
    with engine_held(server):
        server.proc.send_signal(signal.SIGTERM)
        assert wait_for(lambda: refused(server, "GET", "/ready"), timeout=30)  # draining
        assert refused(server, "POST", "/v1/completions", json=LONG)
        long.join(60)
    assert lines[-1] == "data: [DONE]"
    assert finish_reasons(lines) == ["abort"] * 4
    assert server.proc.wait(30) == 0


def test_sigterm_lets_every_accepted_request_finish_whatever_its_adapter(own_server, tiny, tmp_path):
    """More adapters than engine slots: at the signal most requests wait for a slot, half of them
    for an adapter the engine has not loaded yet, and they must all still finish inside the drain
    (loading and swapping adapters goes on while draining), and the server exit as soon as the
    last one has, not at the timeout."""
    names = [f"a{i}" for i in range(6)]
    for i, name in enumerate(names):
        shutil.copytree(tiny["lora-a" if i % 2 else "lora-b"], tmp_path / name)
    server = own_server("--max-loras", "1", "--max-cpu-loras", "2", "--shutdown-timeout", "120")
    warm(server, *names[:3])  # known to the engine; the other three are loaded into it during the drain
    results: dict[str, httpx.Response] = {}

    def post(name: str) -> None:
        results[name] = httpx.post(server.url + "/v1/completions", headers=HEADERS, timeout=120,
                                   json={**LONG, "model": name, "max_tokens": 40})

    threads = [threading.Thread(target=post, args=(name,)) for name in names]
    with engine_held(server), httpx.Client(base_url=server.url, timeout=10) as http:
        for t in threads:
            t.start()
        # Every request accepted: three in the engine (one slot: two wait for it), three waiting
        # for their adapter to be loaded into the engine (validated, asked of the held engine).
        assert wait_for(lambda: value(scrape(http), "server_in_flight_requests") == 3
                        and value(scrape(http), "server_adapters_loaded") == len(names), timeout=60)
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert wait_for(lambda: refused(server, "GET", "/ready"), timeout=30)
    assert server.proc.wait(110) == 0
    exited = time.monotonic() - signalled
    for t in threads:
        t.join(10)
    for name in names:
        choice = results[name].json()["choices"][0]
        assert results[name].status_code == 200 and choice["finish_reason"] == "length", (name, results[name].text)
        assert results[name].json()["usage"]["completion_tokens"] == 40
    # It exits once the last request has ended: far inside the 120 s it would have waited.
    assert exited < 60, exited


def test_sigterm_resumes_generation_that_a_trainer_paused(own_server):
    """An RL trainer pauses generation (`/pause?mode=keep`) around each adapter load; a shutdown
    that comes meanwhile must resume it, or the drain would wait for requests that never run."""
    server = own_server("--shutdown-timeout", "120")
    result: list[httpx.Response] = []
    post = threading.Thread(target=lambda: result.append(httpx.post(
        server.url + "/v1/completions", headers=HEADERS, timeout=120, json={**LONG, "max_tokens": 40})))
    with httpx.Client(base_url=server.url, headers=HEADERS, timeout=30) as http:
        assert http.post("/pause", params={"mode": "keep"}).status_code == 200
        post.start()
        assert wait_for(lambda: value(scrape(http), "server_in_flight_requests") == 1, timeout=60)
        assert http.get("/is_paused").json() == {"is_paused": True}
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(110) == 0
    assert time.monotonic() - signalled < 60
    post.join(10)
    assert result[0].status_code == 200 and result[0].json()["usage"]["completion_tokens"] == 40


def test_queue_limit_answers_429_with_retry_after(small_queues):
    server = small_queues()
    results: list = []

    def post(stream: bool) -> None:
        body = {**LONG, "max_tokens": 150, "stream": stream}
        with httpx.stream("POST", server.url + "/v1/completions", json=body, headers=HEADERS,
                          timeout=120) as r:
            r.read()
            results.append((stream, r.status_code, r.headers.get("retry-after"), r.text))

    # Held, no request can finish before the others arrive: 2 running + 1 queued are admitted,
    # the other 5 refused at once, whatever the machine's speed.
    threads = [threading.Thread(target=post, args=(i % 2 == 1,)) for i in range(8)]
    warm(server)
    with engine_held(server):
        for t in threads:
            t.start()
        assert wait_for(lambda: len(results) == 5, timeout=60), results
    for t in threads:
        t.join(120)
    codes = sorted(code for _, code, _, _ in results)
    assert codes == [200] * 3 + [429] * 5, codes
    for stream, code, retry_after, text in results:
        if code == 429:
            assert retry_after == "1"
            assert json.loads(text)["error"]["type"] == "rate_limit_error"
    assert any(stream and code == 429 for stream, code, _, _ in results), results  # 4 streams, 3 admitted
    rejected = value(scrape(httpx.Client(base_url=server.url)),
                     "server_rejected_requests_total", reason="queued_requests")
    assert rejected == 5


def test_engine_death_fails_requests_cleanly_and_exits_nonzero(small_queues):
    server = small_queues()  # the queue test's (above), which leaves it serving
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


def test_request_deadline_is_504_and_aborts(http, server, client):
    warm(server, "base", "lora-a")
    before = value(scrape(http), "server_finished_requests_total", status="timeout")
    with engine_held(server):  # cannot finish: the deadline ends it, whatever the machine's speed
        r = http.post("/v1/completions", json={**LONG, "request_timeout": 0.5, "model": "lora-a"})
    assert r.status_code == 504, r.text
    assert r.json()["error"]["type"] == "timeout_error"
    # A stream that has started: 16 x 400 tokens, held after the first token (one step of the
    # 400 its choices need in lockstep), so its deadline comes first.
    lines: list[str] = []
    first = threading.Event()
    stream = stream_lines(server.url + "/v1/completions",
                          {**LONG, "prompt": ["go on"] * 16, "request_timeout": 3.0}, lines, first)
    assert first.wait(60)
    with engine_held(server):
        stream.join(60)
    assert lines[0] == "status 200" and lines[-1] == "data: [DONE]", lines[:2]
    assert json.loads(lines[-2].removeprefix("data: "))["error"]["code"] == "timeout"
    assert value(scrape(http), "server_finished_requests_total", status="timeout") == before + 2
    assert wait_for(lambda: value(scrape(http), "vllm:num_requests_running") == 0)


def test_ready_and_health(http):
    assert http.get("/health").json() == {"status": "ok"}
    assert http.get("/ready").json() == {"status": "ready"}


def test_an_idle_connection_stays_open_longer_than_clients_keep_it(server):
    """A client that reuses a kept-alive connection after a pause (httpx, the openai SDK, a load
    balancer) must find it open: a connection the server closes as it is reused loses a request
    without an answer. uvicorn's default closes them after 5 s."""
    def local_port(r: httpx.Response) -> int:
        return r.extensions["network_stream"].get_extra_info("socket").getsockname()[1]

    with httpx.Client(base_url=server.url, limits=httpx.Limits(keepalive_expiry=60)) as c:
        first = local_port(c.get("/health"))
        time.sleep(6)
        assert local_port(c.get("/health")) == first  # the same connection, still open
