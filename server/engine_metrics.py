"""vLLM's engine metrics as /metrics shows them, with `vllm:lora_requests_info` made right.

A gateway's endpoint picker (the Kubernetes Gateway API Inference Extension, llm-d) sends a
request for an adapter to a replica already running it, reading this gauge (its model-server
protocol, docs/proposals/003-model-server-protocol): labels `running_lora_adapters` and
`waiting_lora_adapters` (comma-separated adapter names, as requests carry them in `model`) and
`max_lora`; the value is when it was set, and the picker reads the newest series whose two lists
are not both empty.

vLLM's own gauge (vllm/v1/metrics/loggers.py) is on /metrics too, but unusable for that:
- it names adapters as the engine knows them, `NAME.vVERSION` (server/adapters/registry.py), which
  no request carries, so the picker never finds an adapter anywhere;
- it lists every adapter with a request in either state under both labels (its per-adapter counts
  include zeros), so a running adapter always reads as waiting too;
- it keeps a series for every combination of adapters ever seen.
This logger reads the same engine statistics (requests per LoRA the scheduler runs or queues)
and publishes client names, each adapter under the state its requests are in, in two series.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import REGISTRY, CollectorRegistry, Gauge
from vllm.config import VllmConfig
from vllm.v1.metrics import loggers
from vllm.v1.metrics.stats import SchedulerStats

from server.adapters.registry import adapter_name

LABELS = ("max_lora", "waiting_lora_adapters", "running_lora_adapters")


class LoraRequestsInfo:
    """`vllm:lora_requests_info` under client names. Keeps the newest series (idle: both lists
    empty) and the newest with adapters, the one the picker reads; older ones are dropped."""

    def __init__(self, max_loras: int, registry: CollectorRegistry = REGISTRY) -> None:
        self.gauge = Gauge("vllm:lora_requests_info", "Running stats on lora requests.", LABELS,
                           registry=registry)
        self.max_lora = str(max_loras)
        self._series: set[tuple[str, str, str]] = set()
        self._active: tuple[str, str, str] | None = None
        self.update({}, {})  # max_lora is known before the first request

    def update(self, running: Mapping[str, int], waiting: Mapping[str, int]) -> None:
        """Per-LoRA request counts, keyed by engine LoRA name (vLLM's SchedulerStats)."""
        labels = (self.max_lora, _names(waiting), _names(running))
        self.gauge.labels(*labels).set_to_current_time()
        if labels[1] or labels[2]:
            self._active = labels
        keep = {labels, self._active}
        for old in self._series - keep:
            self.gauge.remove(*old)
        self._series = {s for s in keep if s is not None}


def _names(counts: Mapping[str, int]) -> str:
    # Two versions of one adapter can have requests at once (a republish mid-request): one name.
    return ",".join(dict.fromkeys(adapter_name(lora) for lora, n in counts.items() if n > 0))


class PrometheusStatLogger(loggers.PrometheusStatLogger):
    """vLLM's Prometheus metrics, with LoraRequestsInfo in place of vLLM's LoRA gauge.

    Passed to `AsyncLLM` as a stat logger, it replaces vLLM's default Prometheus logger.
    """

    def __init__(self, vllm_config: VllmConfig, engine_indexes: list[int] | None = None) -> None:
        super().__init__(vllm_config, engine_indexes)
        self.lora_requests_info: LoraRequestsInfo | None = None
        if self.gauge_lora_info is not None:
            REGISTRY.unregister(self.gauge_lora_info)
            self.gauge_lora_info = None  # vLLM's record() then skips its own
            self.lora_requests_info = LoraRequestsInfo(vllm_config.lora_config.max_loras)

    def record(self, scheduler_stats: SchedulerStats | None, iteration_stats, mm_cache_stats=None,
               engine_idx: int = 0) -> None:
        super().record(scheduler_stats, iteration_stats, mm_cache_stats, engine_idx)
        if scheduler_stats is not None and self.lora_requests_info is not None:
            # Counted once for all engines (data parallel): by the one frontend that sees them all.
            self.lora_requests_info.update(scheduler_stats.running_lora_adapters,
                                           scheduler_stats.waiting_lora_adapters)
