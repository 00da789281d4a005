"""Locust users speaking the OpenAI API to the adapter server, each request picking an adapter.

Headless run against a running server (reports go to loadtests/results/locust/):

    export LOADTEST_API_KEY=...            # if the server was started with --api-key
    .venv/bin/locust -f loadtests/locustfile.py --headless -u 16 -r 4 -t 2m \
        --host http://127.0.0.1:8000 \
        --adapter-mix 'base:2,demo-lora-a,demo-lora-b,demo-soft-prompt,demo-lora-a+demo-soft-prompt' \
        --csv loadtests/results/locust/run --html loadtests/results/locust/run.html

Options (flag, or the environment variable beside it):
    --adapter-mix  LOADTEST_ADAPTER_MIX   `a:2,b,lora+soft` or `zipf:1.1:a,b,c` (see loadtests/mix.py)
    --request-mix  LOADTEST_REQUEST_MIX   weights of completions, chat, completions-stream, chat-stream
    --max-tokens   LOADTEST_MAX_TOKENS    completion length asked for (default 32)
    --base-model   LOADTEST_BASE_MODEL    the id `base` stands for (default: read from /v1/models)
    --summary-json LOADTEST_SUMMARY_JSON  write the final totals and errors there, after the last
                                          in-flight request (Locust's CSVs may be written before)
    --user-rate    LOADTEST_USER_RATE     requests per second per user, open-loop (default 0: each
                                          user sends its next request 0-0.2 s after an answer)
    LOADTEST_API_KEY                      sent as `Authorization: Bearer ...`

Stats: each request is named `<kind> [<adapter>]`, e.g. `chat-stream [lora-a+prompt-a]`, so a slow
adapter stands out. Two extra metrics per adapter are reported through Locust's request events
(their "response time" columns hold the metric, not milliseconds of a request):
    TTFT    [adapter]   time to first token in ms (streaming requests only)
    TOK/S   [adapter]   output tokens per second of each request (completion_tokens / latency)
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path

from locust import HttpUser, between, constant_throughput, events, task

# Locust puts only this file's folder on sys.path; the package lives one level up.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from loadtests.mix import AdapterMix, parse_mix  # noqa: E402

KINDS = ("completions", "chat", "completions-stream", "chat-stream")
WORDS = ("planet", "river", "stone", "garden", "window", "silver", "quiet", "market", "engine",
         "yellow", "forest", "letter", "simple", "number", "bridge", "summer", "coffee", "rabbit")


@events.init_command_line_parser.add_listener
def _add_arguments(parser) -> None:
    group = parser.add_argument_group("adapter-serve load test")
    group.add_argument("--adapter-mix", env_var="LOADTEST_ADAPTER_MIX", default="base",
                       help="weighted adapter mix, e.g. 'base:2,lora-a,lora-a+prompt-a' or 'zipf:1.1:a,b,c'")
    group.add_argument("--request-mix", env_var="LOADTEST_REQUEST_MIX",
                       default="completions:1,chat:1,completions-stream:1,chat-stream:1",
                       help=f"weighted request kinds among {', '.join(KINDS)}")
    group.add_argument("--max-tokens", env_var="LOADTEST_MAX_TOKENS", type=int, default=32,
                       help="max_tokens of every request")
    group.add_argument("--base-model", env_var="LOADTEST_BASE_MODEL", default="",
                       help="model id that `base` in the mix stands for (default: from /v1/models)")
    group.add_argument("--summary-json", env_var="LOADTEST_SUMMARY_JSON", default="",
                       help="file for the final per-request totals and errors (JSON)")
    group.add_argument("--user-rate", env_var="LOADTEST_USER_RATE", type=float, default=0.0,
                       help="requests per second per user (0: closed loop, 0-0.2 s think time)")


_ENVIRONMENT = []  # the run's Environment; the `quit` event does not pass it


@events.init.add_listener
def _remember_environment(environment, **kwargs) -> None:
    _ENVIRONMENT.append(environment)


@events.quit.add_listener
def _write_summary(**kwargs) -> None:
    # `quit` fires once every user has stopped, so requests still in flight when the run time
    # ended are counted here, unlike in the CSV files.
    environment = _ENVIRONMENT[-1]
    path = environment.parsed_options.summary_json if environment.parsed_options else ""
    if path:
        stats = environment.runner.stats
        Path(path).write_text(json.dumps({
            "requests": stats.serialize_stats(),
            "errors": [error.to_dict() for error in stats.errors.values()]}, indent=2))


def parse_request_mix(spec: str) -> tuple[list[str], list[float]]:
    kinds, weights = [], []
    for item in spec.split(","):
        if not item.strip():
            continue
        kind, _, weight = item.strip().partition(":")
        if kind not in KINDS:
            raise ValueError(f"unknown request kind {kind!r}; known: {', '.join(KINDS)}")
        kinds.append(kind)
        weights.append(float(weight) if weight else 1.0)
    if not kinds or sum(weights) <= 0:
        raise ValueError(f"empty request mix {spec!r}")
    return kinds, weights


def random_prompt(rng: random.Random) -> str:
    return "Repeat after me: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12)))


class OpenAIUser(HttpUser):
    """One client: a loop of OpenAI requests, each with its adapter drawn from the mix."""

    def wait_time(self) -> float:
        rate = self.environment.parsed_options.user_rate
        # A fixed rate per user keeps the offered load up when answers slow down or are refused
        # (an overload test); the default think time measures what the server sustains.
        return constant_throughput(rate)(self) if rate > 0 else between(0.0, 0.2)(self)

    def on_start(self) -> None:
        opts = self.environment.parsed_options
        self.rng = random.Random()
        self.mix: AdapterMix = parse_mix(opts.adapter_mix)
        self.kinds, self.kind_weights = parse_request_mix(opts.request_mix)
        self.max_tokens = opts.max_tokens
        key = os.environ.get("LOADTEST_API_KEY")
        if key:
            self.client.headers["Authorization"] = f"Bearer {key}"
        self.base_model = opts.base_model or self._base_model_id()

    def _base_model_id(self) -> str:
        with self.client.get("/v1/models", name="/v1/models", catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"HTTP {r.status_code}: {r.text[:200]}")
                return "base"
            cards = r.json()["data"]
        # The base model is the card without a parent; adapters name it as theirs.
        return next((c["id"] for c in cards if not c.get("parent")), cards[0]["id"])

    @task
    def generate(self) -> None:
        target = self.mix.choose(self.rng)
        kind = self.rng.choices(self.kinds, self.kind_weights)[0]
        chat, stream = kind.startswith("chat"), kind.endswith("-stream")
        prompt = random_prompt(self.rng)
        body: dict = {**target.request_fields(self.base_model), "max_tokens": self.max_tokens,
                      "temperature": 1.0}
        if chat:
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        path = "/v1/chat/completions" if chat else "/v1/completions"
        label = target.label
        start = time.perf_counter()
        with self.client.post(path, json=body, stream=stream, catch_response=True,
                              name=f"{kind} [{label}]") as r:
            if r.status_code == 0:  # no answer at all: say what the connection did
                r.failure(f"no response: {type(r.error).__name__}: {r.error}")
                return
            if r.status_code != 200:
                r.failure(f"HTTP {r.status_code}: {r.text[:300]}")
                return
            try:
                first, tokens = self._stream(r, chat) if stream else (None, r.json()["usage"]["completion_tokens"])
            except Exception as exc:  # a broken stream or body is a failed request, not a crash
                r.failure(f"{type(exc).__name__}: {exc}")
                return
            if tokens <= 0:
                r.failure("no completion tokens")
                return
            r.success()
        latency = time.perf_counter() - start
        if first is not None:
            self._metric("TTFT", label, (first - start) * 1000)
        self._metric("TOK/S", label, tokens / latency)

    def _stream(self, r, chat: bool) -> tuple[float | None, int]:
        """Read the SSE stream: (time of the first non-empty text, completion tokens)."""
        first, tokens, chunks, done = None, None, 0, False
        for line in r.iter_lines():
            if not line or not line.startswith(b"data: "):
                continue
            data = line[6:]
            if data == b"[DONE]":
                done = True
                break
            event = json.loads(data)
            if "error" in event:
                raise RuntimeError(event["error"].get("message", event["error"]))
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
            for choice in event.get("choices", ()):
                text = choice["delta"].get("content") if chat else choice.get("text")
                if text:
                    chunks += 1
                    if first is None:
                        first = time.perf_counter()
        if not done:
            raise RuntimeError("stream ended without [DONE]")
        return first, tokens if tokens is not None else chunks

    def _metric(self, kind: str, label: str, value: float) -> None:
        self.environment.events.request.fire(request_type=kind, name=f"{kind} [{label}]",
                                             response_time=value, response_length=0,
                                             exception=None, context={})
