"""Bad input gets the right 4xx in the OpenAI error shape, and the server keeps serving."""

from __future__ import annotations

import json
import os
import shutil
import threading

import httpx
import pytest

from tests.conftest import API_KEY
from tests.e2e.helpers import edit_config, publish
from training.tiny import TinyLlamaSpec, build_base_model, build_lora_adapter

OK_COMPLETION = {"model": "base", "prompt": "hello", "max_tokens": 4, "temperature": 0}
OK_CHAT = {"model": "base", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def assert_error(r: httpx.Response, status: int, *, param: str | None = None,
                 contains: str = "") -> dict:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "Traceback" not in error["message"]
    if param is not None:
        assert error["param"] == param, error
    assert contains.lower() in error["message"].lower(), error
    return error


@pytest.mark.parametrize("body, param, contains", [
    ({"temperature": "hot"}, "temperature", "number"),
    ({"max_tokens": "many"}, "max_tokens", "integer"),
    ({"prompt": {"text": "x"}}, "prompt", ""),
    ({"temperature": 3}, "temperature", "less than or equal to 2"),
    ({"top_p": 0}, "top_p", "greater than 0"),
    ({"n": 0}, "n", "greater than or equal to 1"),
    ({"max_tokens": 0}, "max_tokens", ""),
    ({"presence_penalty": 5}, "presence_penalty", ""),
    ({"extra_body_typo": 1}, "extra_body_typo", "unrecognized"),
    ({"top_k": -5}, "top_k", ""),
    ({"min_p": 1.5}, "min_p", ""),
    ({"repetition_penalty": 0}, "repetition_penalty", ""),
    ({"logprobs": 50}, "logprobs", "at most 20"),
    ({"stop": ["ok", ""]}, "stop", "empty"),
    ({"logit_bias": {"999999": 5}}, "logit_bias", "vocabulary"),
    ({"logit_bias": {"abc": 5}}, "logit_bias", "token ids"),
    ({"prompt": [1, 2, 99999]}, "prompt", "vocabulary"),
    ({"prompt": []}, "prompt", "empty"),
    ({"suffix": "x"}, "suffix", "not supported"),
    ({"n": 2, "temperature": 0}, None, "greedy"),
])
def test_bad_completion_parameters(http, body, param, contains):
    assert_error(http.post("/v1/completions", json={**OK_COMPLETION, **body}), 400,
                 param=param, contains=contains)


@pytest.mark.parametrize("body, param", [
    ({"messages": []}, "messages"),
    ({"messages": "hi"}, "messages"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
    ({"top_logprobs": 3}, "top_logprobs"),
    ({"logprobs": True, "top_logprobs": 21}, "logprobs"),
    ({"max_completion_tokens": -1}, "max_completion_tokens"),
    ({"response_format": {"type": "xml"}}, "response_format.type"),
    ({"tools": [{"type": "function"}]}, "tools.0.function"),
])
def test_bad_chat_parameters(http, body, param):
    assert_error(http.post("/v1/chat/completions", json={**OK_CHAT, **body}), 400, param=param)


def schema_format(schema) -> dict:
    return {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}}


BAD_CONSTRAINTS = [  # (fields, param, words the reason contains)
    (schema_format({"type": "foo"}), "response_format.json_schema.schema", "not a valid JSON schema"),
    (schema_format({"type": "object", "properties": {"a": {"$ref": "#/$defs/nope"}}}),
     "response_format.json_schema.schema", "nope"),
    (schema_format({"type": "string", "pattern": "(?<=a)b"}),
     "response_format.json_schema.schema", "look-around"),
    ({"response_format": {"type": "json_schema"}}, "response_format.json_schema", "json_schema"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "bad name!"}}},
     "response_format.json_schema.name", "pattern"),
    ({"structured_outputs": {"regex": "(abc"}}, "structured_outputs.regex", "unclosed group"),
    ({"structured_outputs": {"grammar": "root ::= foo"}}, "structured_outputs.grammar", "foo"),
    ({"structured_outputs": {"grammar": "start: NOPE"}}, "structured_outputs.grammar", "NOPE"),
    ({"structured_outputs": {"choice": []}}, "structured_outputs.choice", "at least 1"),
    ({"structured_outputs": {"choice": ["a"], "regex": "a"}}, "structured_outputs", "exactly one"),
    ({"structured_outputs": {"regex": "a"}, "response_format": {"type": "json_object"}},
     "structured_outputs", "not both"),
    ({"structured_outputs": {"regex": "a"}, "min_tokens": 3}, "min_tokens", "grammar"),
    ({"response_format": {"type": "json_object"}, "ignore_eos": True}, "ignore_eos", "grammar"),
    ({"structured_outputs": {"sql": "x"}}, "structured_outputs.sql", "unrecognized"),
]


@pytest.mark.parametrize("fields, param, contains", BAD_CONSTRAINTS)
@pytest.mark.parametrize("path, body", [("/v1/chat/completions", OK_CHAT),
                                        ("/v1/completions", OK_COMPLETION)])
def test_bad_constraints_name_their_field(http, path, body, fields, param, contains):
    assert_error(http.post(path, json={**body, **fields}), 400, param=param, contains=contains)


TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


@pytest.mark.parametrize("fields, param, contains", [
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 5}}}],
      "tool_choice": "required"}, "tools.0.function.parameters", "not a valid JSON schema"),
    ({"tools": [{"type": "function", "function": {"name": "bad name"}}]},
     "tools.0.function.name", "pattern"),
    ({"tool_choice": "required"}, "tool_choice", "needs `tools`"),
    ({"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "g"}}},
     "tool_choice.function.name", "not in `tools`"),
    ({"tools": [TOOL, TOOL], "tool_choice": "required"}, "tools.1.function.name", "two tools"),
    ({"tools": [TOOL], "tool_choice": "sometimes"}, "tool_choice", ""),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0.tool_call_id", "tool_call_id"),
    ({"messages": [{"role": "user", "content": "x", "tool_calls": [
        {"id": "1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}]},
     "messages.0.tool_calls", "assistant"),
    ({"messages": [{"role": "assistant", "tool_calls": [
        {"id": "1", "type": "function", "function": {"name": "f", "arguments": "{nope"}}]}]},
     "messages.0.tool_calls.0.function.arguments", "not valid JSON"),
    ({"messages": [{"role": "assistant", "tool_calls": [
        {"id": "1", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]},
     "messages.0.tool_calls.0.function.arguments", "object"),
])
def test_bad_tool_requests_name_their_field(http, fields, param, contains):
    assert_error(http.post("/v1/chat/completions", json={**OK_CHAT, **fields}), 400, param=param,
                 contains=contains)


def test_malformed_json_and_wrong_content(http):
    assert_error(http.post("/v1/completions", content=b'{"model": "base", "prompt": ',
                           headers={"content-type": "application/json"}), 400,
                 contains="not valid JSON")
    assert_error(http.post("/v1/completions", content=b"[1, 2]",
                           headers={"content-type": "application/json"}), 400)
    assert_error(http.post("/v1/chat/completions", json={"model": "base"}), 400, param="messages")


def test_too_long_prompts_say_the_limit(http):
    long_prompt = "word " * 600  # > 512 tokens of context
    e = assert_error(http.post("/v1/completions", json={**OK_COMPLETION, "prompt": long_prompt}),
                     400, contains="maximum context length is 512")
    assert e["param"] == "prompt"
    assert_error(http.post("/v1/completions", json={**OK_COMPLETION, "prompt": "word " * 100,
                                                    "max_tokens": 500}), 400,
                 param="max_tokens", contains="maximum context length is 512")
    huge = "x" * 2_000_000
    assert_error(http.post("/v1/chat/completions", json={
        **OK_CHAT, "messages": [{"role": "user", "content": huge}]}), 400,
        contains="maximum context length")


@pytest.mark.parametrize("model", [
    "nope", "../lora-a", "..", ".", "lora-a/../lora-b", "/etc/passwd", "%2e%2e",
    "lora-a\x00", "a" * 300, "",
])
def test_unknown_and_traversal_model_names_are_404(http, model):
    e = assert_error(http.post("/v1/completions", json={**OK_COMPLETION, "model": model}), 404,
                     param="model")
    assert e["code"] == "model_not_found"


@pytest.mark.parametrize("body, status", [
    ({"name": "x", "path": "../../etc"}, 400),
    ({"name": "x", "path": "/etc"}, 400),
    ({"name": "../x", "path": "lora-a"}, 400),
    ({"name": "x/y"}, 400),
    ({"name": "x", "path": "does-not-exist"}, 404),
    ({"name": "lora-a", "path": "lora-b"}, 409),
    ({"path": "lora-a"}, 400),
])
def test_bad_adapter_registration(http, body, status):
    assert_error(http.post("/v1/adapters", json=body), status)


def test_unknown_adapter_delete_is_404(http):
    assert_error(http.delete("/v1/adapters/never-there"), 404)
    assert_error(http.delete("/v1/adapters/..%2F..%2Fetc"), 404)


def test_api_key_is_required(server):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}):
        r = httpx.post(server.url + "/v1/completions", json=OK_COMPLETION, headers=headers)
        assert_error(r, 401)
    r = httpx.get(server.url + "/v1/models", headers={"Authorization": "Bearer " + API_KEY + "x"})
    assert_error(r, 401)


@pytest.fixture(scope="module")
def broken_adapters(server, tiny, tmp_path_factory):
    """Adapters that are each wrong in one way, published into the running server."""
    tmp = tmp_path_factory.mktemp("broken")
    good = tiny["lora-a"]
    made = {}

    def variant(name, fn):
        d = tmp / name
        shutil.copytree(good, d)
        fn(d)
        made[name] = publish(d, server.adapters, name)

    variant("bad-corrupt", lambda d: (d / "adapter_model.safetensors").write_bytes(b"\x00garbage" * 10))
    variant("bad-json", lambda d: (d / "adapter_config.json").write_text("{not json"))
    variant("bad-dora", lambda d: edit_config(d, use_dora=True))
    variant("bad-mts", lambda d: edit_config(d, modules_to_save=["lm_head"]))
    variant("bad-missing", lambda d: (d / "adapter_model.safetensors").unlink())
    variant("bad-pickle", lambda d: (d / "adapter_model.safetensors").rename(d / "adapter_model.bin"))
    variant("bad-type", lambda d: edit_config(d, peft_type="IA3"))
    made["bad-rank"] = publish(build_lora_adapter(tiny["base"], tmp / "r32", rank=32, seed=1),
                               server.adapters, "bad-rank")
    other = build_base_model(tmp / "other-base", spec=TinyLlamaSpec(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=32))
    made["bad-shape"] = publish(build_lora_adapter(other, tmp / "shape", seed=1),
                                server.adapters, "bad-shape")
    outside = tmp / "outside"
    shutil.copytree(good, outside)
    os.symlink(outside, server.adapters / "bad-symlink")
    made["bad-symlink"] = server.adapters / "bad-symlink"
    manifest = tmp / "manifest"
    shutil.copytree(good, manifest)
    (manifest / "manifest.json").write_text(json.dumps(
        {"format": 1, "base_model": {"identity": "sha256:" + "0" * 64}}))
    made["bad-base"] = publish(manifest, server.adapters, "bad-base")
    yield made
    for path in made.values():
        if path.is_symlink():
            path.unlink()
        else:
            shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("name, reason", [
    ("bad-corrupt", "safetensors"),
    ("bad-json", "not valid JSON"),
    ("bad-dora", "DoRA"),
    ("bad-mts", "modules_to_save"),
    ("bad-missing", "adapter_model.safetensors is missing"),
    ("bad-pickle", "only safetensors"),
    ("bad-type", "IA3"),
    ("bad-rank", "above the server's --max-lora-rank 16"),
    ("bad-shape", "do not fit the base model"),
    ("bad-symlink", "outside the adapters directory"),
    ("bad-base", "different base model"),
])
def test_bad_adapters_are_refused_with_the_reason(http, broken_adapters, name, reason):
    e = assert_error(http.post("/v1/completions", json={**OK_COMPLETION, "model": name}), 400,
                     param="model", contains=reason)
    assert name in e["message"]
    listed = {a["name"]: a for a in http.get("/v1/adapters").json()["data"]}
    assert listed[name]["status"] == "error" and reason.lower() in listed[name]["error"].lower()
    assert name not in {m["id"] for m in http.get("/v1/models").json()["data"]}


def test_bad_requests_do_not_disturb_a_running_generation(http, server, broken_adapters):
    result = {}

    def long_generation():
        with httpx.Client(base_url=server.url, timeout=120,
                          headers={"Authorization": f"Bearer {API_KEY}"}) as c:
            result["r"] = c.post("/v1/completions", json={
                **OK_COMPLETION, "model": "lora-a", "max_tokens": 200, "ignore_eos": True})

    thread = threading.Thread(target=long_generation)
    thread.start()
    for name in broken_adapters:
        assert http.post("/v1/completions", json={**OK_COMPLETION, "model": name}).status_code == 400
    assert http.post("/v1/completions", json={**OK_COMPLETION, "temperature": 9}).status_code == 400
    for fields, _, _ in BAD_CONSTRAINTS:
        assert http.post("/v1/completions", json={**OK_COMPLETION, **fields}).status_code == 400
    thread.join()
    r = result["r"]
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 200
    assert http.get("/health").status_code == 200
    assert http.post("/v1/completions", json=OK_COMPLETION).status_code == 200
