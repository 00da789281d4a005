"""Prometheus metrics of the HTTP layer, labelled by adapter and soft prompt.

They live in prometheus-client's default registry next to vLLM's own engine metrics
(`vllm:*`), so one scrape of /metrics shows both.
"""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from server.in_engine import lora_residency

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


class LoraResidency:
    """Where the engine holds each LoRA, asked at each scrape, in the series vLLM PR #54830 defines
    for routers (llm-d's lora-load-state scorer reads them):

    - `vllm:lora_adapter_loaded{adapter_name, level, pinned, rank}`: 1 for every LoRA the server
      serves, at its best level: `gpu`, in one of the engine's adapter slots (vLLM's word for it,
      whatever the device), what a batch can use at once; `cpu`, in the engine's host-memory
      cache only; `disk`, validated and snapshotted by the server, not in the engine (its next
      request loads it). `pinned`: kept in a slot (--pin-adapters or the manifest's `pinned`).
    - `vllm:num_gpu_loaded_lora_adapters` and `vllm:num_cpu_loaded_lora_adapters`: the engine's
      own counts of LoRAs in slots and in its cache (every version, old ones not yet let go too).
    - `vllm:max_gpu_lora_adapters`: the slots (`max_loras`).
    - `vllm:lora_adapter_load_seconds`: the server's loads of an adapter version into the engine.

    The question goes to the worker (server.in_engine.lora_residency) as an engine utility call:
    a busy or stopped engine answers late, so a scrape waits at most `wait` seconds and otherwise
    reports the last answer; the question stays pending (never cancelled mid-call) and is not
    asked again until it is answered.
    """

    SERIES = frozenset({"vllm:lora_adapter_loaded", "vllm:num_gpu_loaded_lora_adapters",
                        "vllm:num_cpu_loaded_lora_adapters", "vllm:max_gpu_lora_adapters"})
    """The series a scrape asks the engine for (the load histogram is the server's own)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY, wait: float = 0.5) -> None:
        self.registry, self.wait = registry, wait
        self._pending: asyncio.Task | None = None
        self._made = False

    def _make(self) -> None:
        """The collectors, made at first use, once the engine is up: vLLM's metrics set-up
        unregisters every `vllm:` collector it finds (vllm.v1.metrics.prometheus
        .unregister_vllm_metrics)."""
        if self._made:
            return
        self.loaded = Gauge("vllm:lora_adapter_loaded", "LoRA adapters served, by where the engine "
                            "holds them: gpu (an engine slot, whatever the device), cpu (the engine's "
                            "host cache), disk (not in the engine).",
                            ("adapter_name", "level", "pinned", "rank"), registry=self.registry)
        self.in_slots = Gauge("vllm:num_gpu_loaded_lora_adapters", "LoRA adapters in the engine's "
                              "slots, on whatever device (its own count, asked at each scrape).",
                              registry=self.registry)
        self.in_cache = Gauge("vllm:num_cpu_loaded_lora_adapters", "LoRA adapters in the engine's "
                              "host-memory cache, those in slots included.", registry=self.registry)
        self.slots = Gauge("vllm:max_gpu_lora_adapters", "The engine's LoRA slots (max_loras): "
                           "different adapters one batch can run.", registry=self.registry)
        self.load_seconds = Histogram("vllm:lora_adapter_load_seconds", "Loading an adapter version "
                                      "into the engine (from the server's snapshot).",
                                      buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                               1, 2.5, 5, 10), registry=self.registry)
        self._made = True

    def observe_load(self, seconds: float) -> None:
        self._make()
        self.load_seconds.observe(seconds)

    async def sample(self, engine, adapters) -> None:
        """`adapters`: the server's AdapterRegistry (None before start-up ends)."""
        if engine is None or engine.errored:
            return
        self._make()
        self.slots.set(engine.vllm_config.lora_config.max_loras)
        if self._pending is None or self._pending.done():
            self._pending = asyncio.ensure_future(engine.collective_rpc(lora_residency.METHOD))
        # This scrape's own question: a concurrent scrape may replace `_pending` while this one waits.
        pending = self._pending
        await asyncio.wait({pending}, timeout=self.wait)
        if not pending.done() or pending.cancelled() or pending.exception() is not None:
            return
        where = pending.result()[0]  # every worker holds the same adapters
        cache, slots = set(where["cache"]), set(where["slots"])
        self.in_slots.set(len(slots))
        self.in_cache.set(len(cache))
        self.loaded.clear()
        for lora_id, adapter in (adapters.engine_loras() if adapters is not None else {}).items():
            level = "gpu" if lora_id in slots else "cpu" if lora_id in cache else "disk"
            self.loaded.labels(adapter_name=adapter.name, level=level,
                               pinned=str(adapter.pinned).lower(), rank=str(adapter.lora.rank)).set(1)
