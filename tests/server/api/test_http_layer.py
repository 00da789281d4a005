"""The HTTP layer on a scripted stand-in engine: readiness, SSE framing, error mapping.

End-to-end behaviour is tested against the real engine in tests/e2e; here the engine's failure
modes can be produced on demand.
"""

from __future__ import annotations

from pathlib import Path

from vllm.v1.engine.exceptions import EngineDeadError

from tests.e2e.helpers import publish
from tests.server.api.scripted import ScriptedEngine


BODY = {"model": "base", "prompt": "hi", "max_tokens": 3}
CHAT = {"model": "base", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}


def sse_events(text: str) -> list[str]:
    return [line[len("data: "):] for line in text.split("\n\n") if line.startswith("data: ")]


def test_not_ready_is_503_everywhere(make_client):
    client = make_client(ready=False)
    for r in (client.get("/health"), client.post("/v1/completions", json=BODY),
              client.get("/v1/models")):
        assert r.status_code == 503 and "starting" in r.json()["error"]["message"]


def test_dead_engine_is_503(make_client):
    engine = ScriptedEngine()
    client = make_client(engine)
    assert client.get("/health").status_code == 200
    engine.errored = True
    assert client.get("/health").status_code == 503


def test_completion_sse_framing(make_client):
    r = make_client().post("/v1/completions", json={**BODY, "stream": True,
                                                     "stream_options": {"include_usage": True}})
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    import json
    chunks = [json.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == " one two three"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3
    assert all(c["usage"] is None for c in chunks[:-1])


def test_chat_stream_opens_with_role(make_client):
    import json
    events = sse_events(make_client().post("/v1/chat/completions",
                                           json={**CHAT, "stream": True}).text)
    first = json.loads(events[0])["choices"][0]
    assert first["delta"] == {"content": "", "role": "assistant"}
    assert json.loads(events[-2])["choices"][0]["finish_reason"] == "length"


def test_engine_death_on_admission_is_503_not_500(make_client):
    r = make_client(ScriptedEngine(fail=EngineDeadError())).post("/v1/completions", json=BODY)
    assert r.status_code == 503 and r.json()["error"]["type"] == "service_unavailable"


def test_error_mid_stream_becomes_an_error_event(make_client):
    client = make_client(ScriptedEngine(fail=EngineDeadError(), fail_at=1))
    events = sse_events(client.post("/v1/completions", json={**BODY, "stream": True}).text)
    assert '"error"' in events[-2] and events[-1] == "[DONE]"


def test_unexpected_failure_is_500_without_internals(make_client):
    client = make_client(ScriptedEngine(fail=RuntimeError("secret internal detail")))
    r = client.post("/v1/completions", json=BODY)
    assert r.status_code == 500
    assert "secret" not in r.text and "Traceback" not in r.text
    assert r.json()["error"]["type"] == "server_error"


def test_unknown_route_and_method_keep_error_shape(make_client):
    client = make_client()
    assert client.get("/v1/nothing").json()["error"]["code"] == "not_found"
    assert client.get("/v1/completions").status_code == 405


def responses_events(text: str) -> list[tuple[str, dict]]:
    import json
    out = []
    for block in text.strip().split("\n\n"):
        kind, data = block.split("\n", 1)
        out.append((kind.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return out


def test_responses_stream_is_typed_and_numbered(make_client):
    r = make_client().post("/v1/responses", json={"model": "base", "input": "hi", "stream": True})
    events = responses_events(r.text)
    assert [kind for kind, _ in events] == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added", *["response.output_text.delta"] * 3,
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.incomplete"]  # the scripted engine stops with finish_reason length
    assert all(kind == data["type"] for kind, data in events)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert events[-4][1]["text"] == " one two three"
    final = events[-1][1]["response"]
    assert final["status"] == "incomplete" and final["usage"]["output_tokens"] == 3
    assert final["output"][0]["content"][0]["text"] == " one two three"


def test_responses_error_mid_stream_becomes_an_error_event(make_client):
    client = make_client(ScriptedEngine(fail=EngineDeadError(), fail_at=1))
    events = responses_events(client.post("/v1/responses", json={
        "model": "base", "input": "hi", "stream": True}).text)
    kind, data = events[-1]
    assert kind == "error" and data["code"] == "service_unavailable"
    assert "response.completed" not in [kind for kind, _ in events]


def test_draining_refuses_new_requests_but_stays_alive(make_client):
    client = make_client()
    assert client.get("/ready").status_code == 200
    client.app.state.server.draining = True
    r = client.post("/v1/completions", json=BODY)
    assert r.status_code == 503 and "shutting down" in r.json()["error"]["message"]
    assert client.get("/ready").status_code == 503
    assert client.get("/health").status_code == 200


def test_openapi_document_states_errors_extensions_and_media_types(make_client):
    doc = make_client().get("/openapi.json").json()
    paths = doc["paths"]
    chat = paths["/v1/chat/completions"]["post"]["responses"]
    assert {"200", "400", "401", "404", "429", "503", "504"} <= set(chat)
    assert "422" not in chat and "HTTPValidationError" not in doc["components"]["schemas"]
    assert chat["400"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorResponse")
    assert "text/event-stream" in chat["200"]["content"]
    assert set(paths["/metrics"]["get"]["responses"]["200"]["content"]) == {
        "text/plain; version=1.0.0; charset=utf-8"}
    fields = doc["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    assert fields["top_k"].get("x-extension") is True
    assert fields["structured_outputs"].get("x-extension") is True
    assert "x-extension" not in fields["temperature"]
    assert "most likely" in fields["top_k"]["description"]  # attribute docstrings describe


def test_metrics_can_be_narrowed_to_named_series(make_client, tiny):
    """`/metrics?name[]=...` (prometheus_client's filter, as on vLLM): a poller that reads a
    gauge or two gets those only, not every adapter's series."""
    from prometheus_client.parser import text_string_to_metric_families

    client = make_client()
    publish(tiny["lora-a"], Path(client.app.state.server.registry.root), "lora-a")
    assert client.post("/v1/completions", json={"model": "lora-a", "prompt": "hi", "max_tokens": 2}).status_code == 200

    def families(query: str) -> set[str]:
        r = client.get("/metrics" + query)
        assert r.status_code == 200
        return {f.name for f in text_string_to_metric_families(r.text)}

    everything = families("")
    assert {"server_requests", "vllm:lora_adapter_loaded", "vllm:num_cpu_loaded_lora_adapters"} <= everything
    assert families("?name[]=server_adapters_loaded") == {"server_adapters_loaded"}
    assert families("?name[]=vllm:num_cpu_loaded_lora_adapters&name[]=vllm:lora_adapter_loaded") == {
        "vllm:num_cpu_loaded_lora_adapters", "vllm:lora_adapter_loaded"}
