"""Per-key adapter scoping (--api-keys-file) on the session server."""

from __future__ import annotations

import os
import time

import httpx
import pytest

from tests.conftest import API_KEY, KEYS_FILE
from tests.e2e.test_disconnect import wait_for


def as_key(server, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {key}"})


def complete(c: httpx.Client, model: str, **extra) -> httpx.Response:
    return c.post("/v1/completions", json={"model": model, "prompt": "hi", "max_tokens": 2,
                                           **extra})


def test_a_key_sees_and_uses_only_its_adapters(server):
    with as_key(server, "key-loras") as c:
        assert {m["id"] for m in c.get("/v1/models").json()["data"]} == {"lora-a", "lora-b"}
        assert {a["name"] for a in c.get("/v1/adapters").json()["data"]} == {"lora-a", "lora-b"}
        assert complete(c, "lora-a").status_code == 200
        unknown = complete(c, "no-such-adapter").json()["error"]
        for model in ("prompt-a", "tool-lora", "base"):  # exists, but not for this key
            r = complete(c, model)
            assert r.status_code == 404
            assert r.json()["error"] == {**unknown, "message": unknown["message"].replace(
                "no-such-adapter", model)}  # the same answer as an unknown name
        r = complete(c, "lora-a", soft_prompt="prompt-a")
        assert r.status_code == 404 and r.json()["error"]["param"] == "soft_prompt"
        r = c.post("/v1/chat/completions", json={"model": "prompt-a", "max_tokens": 2,
                                                 "messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 404
        assert c.post("/v1/responses", json={"model": "base", "input": "x"}).status_code == 404


def test_only_managing_keys_manage_adapters(server):
    with as_key(server, "key-loras") as c:
        r = c.post("/v1/adapters", json={"name": "lora-copy", "path": "lora-a"})
        assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
        assert c.delete("/v1/adapters/lora-a").status_code == 403
    with as_key(server, "key-manager") as c:
        assert c.post("/v1/adapters", json={"name": "lora-copy", "path": "lora-a"}).status_code == 200
        assert complete(c, "lora-copy").status_code == 200
        assert c.delete("/v1/adapters/lora-copy").status_code == 200


def test_the_keys_file_is_reread_when_it_changes(server):
    path = server.keys_file
    try:
        path.write_text(KEYS_FILE + "  - key: key-new\n    adapters: [prompt-a]\n")
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
        with as_key(server, "key-new") as c:
            assert wait_for(lambda: complete(c, "prompt-a").status_code == 200, timeout=10)
            assert complete(c, "lora-a").status_code == 404
    finally:
        path.write_text(KEYS_FILE)
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    with as_key(server, "key-new") as c:
        assert wait_for(lambda: complete(c, "prompt-a").status_code == 401, timeout=10)


@pytest.mark.parametrize("key", ["key-loras", "key-manager", API_KEY])
def test_metrics_never_carry_keys(http, key):
    assert key not in http.get("/metrics").text
