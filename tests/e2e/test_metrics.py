"""/metrics is real Prometheus exposition, labelled by adapter and soft prompt."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families


def scrape(http) -> dict[tuple[str, frozenset], float]:
    r = http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def value(samples, name, **labels) -> float:
    return sum(v for (n, ls), v in samples.items()
               if n == name and set(labels.items()) <= set(ls))


def test_generation_metrics_by_adapter(client, http):
    before = scrape(http)
    r = client.completions.create(model="lora-b", prompt="count the tokens", max_tokens=7,
                                  temperature=0)
    after = scrape(http)
    labels = {"endpoint": "completions", "adapter": "lora-b", "soft_prompt": "none"}

    def delta(name, **extra):
        return value(after, name, **labels, **extra) - value(before, name, **labels, **extra)

    assert delta("server_requests_total", status="ok") == 1
    finished = {"endpoint": "completions", "status": "ok"}  # whatever the adapter
    assert value(after, "server_finished_requests_total", **finished) - \
        value(before, "server_finished_requests_total", **finished) == 1
    assert delta("server_prompt_tokens_total") == r.usage.prompt_tokens
    assert delta("server_generation_tokens_total") == 7
    assert delta("server_time_to_first_token_seconds_count") == 1
    assert delta("server_request_latency_seconds_count") == 1
    assert value(after, "server_adapters_loaded") >= 1
    assert value(after, "server_adapter_load_seconds_count") >= 1
    # vLLM's own engine metrics share the endpoint.
    assert any(name.startswith("vllm:") for name, _ in after)


def test_soft_prompt_label_and_error_counts(client, http):
    before = scrape(http)
    client.completions.create(model="lora-a", prompt="x", max_tokens=2,
                              extra_body={"soft_prompt": "prompt-a"})
    http.post("/v1/completions", json={"model": "missing", "prompt": "x"})
    after = scrape(http)
    stacked = {"adapter": "lora-a", "soft_prompt": "prompt-a", "status": "ok"}
    assert value(after, "server_requests_total", **stacked) - \
        value(before, "server_requests_total", **stacked) == 1
    errors = {"endpoint": "/v1/completions", "status": "404"}
    assert value(after, "server_errors_total", **errors) - \
        value(before, "server_errors_total", **errors) == 1


def test_cached_prompt_tokens_by_soft_prompt(client, http):
    """The soft prompt's virtual tokens, computed once, are cached prompt tokens from then on."""
    labels = {"adapter": "lora-a", "soft_prompt": "prompt-a"}
    before = scrape(http)
    usages = [client.completions.create(model="lora-a", prompt=f"again {i}", max_tokens=2,
                                        extra_body={"soft_prompt": "prompt-a"}).usage
              for i in range(2)]
    cached = value(scrape(http), "server_cached_prompt_tokens_total", **labels) - \
        value(before, "server_cached_prompt_tokens_total", **labels)
    assert cached == sum(u.prompt_tokens_details.cached_tokens for u in usages) >= 8


def test_startup_phases_from_every_process(http):
    # Timed in the API process and, through the plugin, in the engine core (which runs the
    # one worker on CPU): the critical path adds up to the start-up's total.
    samples = scrape(http)
    phases = {dict(labels)["phase"]: v for (name, labels), v in samples.items()
              if name == "server_startup_seconds"}
    for phase in ("imports", "model files", "engine config", "engine core imports", "plugin", "workers",
                  "weights", "profile", "kv cache", "adapters", "preloaded"):
        assert phase in phases, phase
    # The engine core's interpreter, prestarted, imported torch and vLLM beside the API process;
    # at the hand-over little of that was left on the path.
    assert phases["preloaded"] > 0.5
    assert phases["engine core imports"] < phases["preloaded"]
    assert 0 < phases["weights"] <= phases["workers"]
    on_path = sum(v for phase, v in phases.items() if phase not in ("total", "weights", "preloaded"))
    assert on_path == pytest.approx(phases["total"], rel=1e-6)
