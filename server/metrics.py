"""Prometheus metrics of the HTTP layer, labelled by adapter and soft prompt.

They live in prometheus-client's default registry next to vLLM's own engine metrics
(`vllm:*`), so one scrape of /metrics shows both.
"""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

# Latencies on CPU range from milliseconds (TTFT of a short prompt) to minutes (long generations).
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_REQUEST_LABELS = ("endpoint", "adapter", "soft_prompt")


class Metrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.requests = Counter(
            "server_requests", "Finished generation requests.",
            (*_REQUEST_LABELS, "status"), registry=registry)
        self.finished = Counter(
            "server_finished_requests", "Finished generation requests by endpoint and status, "
            "whatever their adapters: these series stay when an adapter's go (Metrics.forget), "
            "so totals never fall.", ("endpoint", "status"), registry=registry)
        self.errors = Counter(
            "server_errors", "Requests answered with an error, by HTTP status.",
            ("endpoint", "status"), registry=registry)
        self.rejected = Counter(
            "server_rejected_requests", "Requests refused with 429 because a queue limit "
            "(--max-queued-requests, --max-queued-tokens) was reached.", ("reason",),
            registry=registry)
        self.prompt_tokens = Counter(
            "server_prompt_tokens", "Prompt tokens processed (virtual tokens included).",
            _REQUEST_LABELS, registry=registry)
        self.cached_prompt_tokens = Counter(
            "server_cached_prompt_tokens", "Prompt tokens whose KV came from a cache (prefix "
            "cache, soft-prompt cache) instead of being computed.", _REQUEST_LABELS, registry=registry)
        self.generation_tokens = Counter(
            "server_generation_tokens", "Tokens generated.", _REQUEST_LABELS, registry=registry)
        self.time_to_first_token = Histogram(
            "server_time_to_first_token_seconds", "From request arrival to the first token.",
            _REQUEST_LABELS, buckets=_LATENCY_BUCKETS, registry=registry)
        self.request_latency = Histogram(
            "server_request_latency_seconds", "From request arrival to the last token.",
            _REQUEST_LABELS, buckets=_LATENCY_BUCKETS, registry=registry)
        self.adapters_loaded = Gauge(
            "server_adapters_loaded", "Adapters validated and ready to serve.", registry=registry)
        self.adapter_load_seconds = Histogram(
            "server_adapter_load_seconds", "Time to snapshot and validate an adapter version.",
            ("kind",), registry=registry)
        self.startup_seconds = Gauge(
            "server_startup_seconds", "This process's start-up, from its creation to ready, by "
            "phase (server.startup.breakdown); phase=\"total\" is the whole.", ("phase",),
            registry=registry)
        self.in_flight = Gauge(
            "server_in_flight_requests", "Engine requests this server has in flight (accepted, not yet "
            "ended); what a SIGTERM's drain waits for.", registry=registry)
        self.adapter_load_failures = Counter(
            "server_adapter_load_failures", "Adapter versions refused at load.",
            ("adapter",), registry=registry)


    def forget(self, adapter: str) -> None:
        """Drop every series labelled with `adapter` (as the adapter or the soft prompt), once it
        is no longer served: online RL serves a new adapter name at every step, and series kept
        for each would grow the process and every scrape without bound."""
        for metric in (self.requests, self.prompt_tokens, self.cached_prompt_tokens,
                       self.generation_tokens, self.time_to_first_token, self.request_latency):
            metric.remove_by_labels({"adapter": adapter})
            metric.remove_by_labels({"soft_prompt": adapter})
        self.adapter_load_failures.remove_by_labels({"adapter": adapter})


class EngineLoraCount:
    """Asks the engine for its loaded LoRAs at each scrape, for `vllm:num_gpu_loaded_lora_adapters`
    (vLLM's name for it, vllm-project/vllm PR #54830: routers such as llm-d read it).

    The question is an engine utility call: a busy or stopped engine answers late, so a scrape
    waits at most `wait` seconds and otherwise reports the last answer; the question stays
    pending (never cancelled mid-call) and is not asked again until it is answered.
    """

    def __init__(self, registry: CollectorRegistry = REGISTRY, wait: float = 0.5) -> None:
        self.registry, self.wait = registry, wait
        self.gauge: Gauge | None = None
        self._pending: asyncio.Task | None = None

    async def sample(self, engine) -> None:
        if engine is None or engine.errored:
            return
        if self.gauge is None:
            # Made once the engine is up: vLLM's metrics set-up unregisters every `vllm:` collector
            # it finds (vllm.v1.metrics.prometheus.unregister_vllm_metrics).
            self.gauge = Gauge("vllm:num_gpu_loaded_lora_adapters", "LoRA adapters the engine "
                               "holds loaded, on whatever device (its own count, asked at each "
                               "scrape).", registry=self.registry)
        if self._pending is None or self._pending.done():
            self._pending = asyncio.ensure_future(engine.list_loras())
        # This scrape's own question: a concurrent scrape may replace `_pending` while this one waits.
        pending = self._pending
        await asyncio.wait({pending}, timeout=self.wait)
        if pending.done() and not pending.cancelled() and pending.exception() is None:
            self.gauge.set(len(pending.result()))
