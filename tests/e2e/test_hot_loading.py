"""Adapters appear, change and disappear while the server runs, with no restart."""

from __future__ import annotations

import shutil

import openai
import pytest

from tests import oracle
from tests.e2e.helpers import publish
from training.tiny import build_lora_adapter

MAX_NEW = 12


def greedy_ids(client, model, ids):
    r = client.completions.create(model=model, prompt=ids, max_tokens=MAX_NEW, temperature=0,
                                  extra_body={"return_token_ids": True})
    return r.choices[0].model_extra["token_ids"]


def model_ids(client) -> set[str]:
    return {m.id for m in client.models.list().data}


def test_appear_change_disappear(client, server, tiny, tmp_path):
    ids = oracle.tokenizer(tiny["base"]).encode("hot loading works")
    v1 = build_lora_adapter(tiny["base"], tmp_path / "v1", rank=8, seed=21)
    v2 = build_lora_adapter(tiny["base"], tmp_path / "v2", rank=16, seed=22)

    with pytest.raises(openai.NotFoundError):
        greedy_ids(client, "hot", ids)

    publish(v1, server.adapters, "hot")
    assert "hot" in model_ids(client)
    first = greedy_ids(client, "hot", ids)
    assert first == oracle.greedy(tiny["base"], ids, MAX_NEW, v1)

    publish(v2, server.adapters, "hot")
    second = greedy_ids(client, "hot", ids)
    assert second == oracle.greedy(tiny["base"], ids, MAX_NEW, v2)
    assert second != first

    shutil.rmtree(server.adapters / "hot")
    assert "hot" not in model_ids(client)
    with pytest.raises(openai.NotFoundError):
        greedy_ids(client, "hot", ids)


def test_register_nested_path_then_delete(client, http, server, tiny, tmp_path):
    ids = oracle.tokenizer(tiny["base"]).encode("registered")
    src = build_lora_adapter(tiny["base"], tmp_path / "nested", rank=8, seed=31)
    (server.adapters / "team").mkdir(exist_ok=True)
    publish(src, server.adapters / "team", "sql")

    r = http.post("/v1/adapters", json={"name": "team-sql", "path": "team/sql"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ready" and r.json()["kind"] == "lora"
    assert "team-sql" in model_ids(client)
    assert greedy_ids(client, "team-sql", ids) == oracle.greedy(tiny["base"], ids, MAX_NEW, src)

    assert http.delete("/v1/adapters/team-sql").status_code == 200
    assert "team-sql" not in model_ids(client)
    with pytest.raises(openai.NotFoundError):
        greedy_ids(client, "team-sql", ids)
    assert http.delete("/v1/adapters/team-sql").status_code == 404


def test_delete_discovered_adapter_hides_it_until_a_new_version(client, http, server, tiny, tmp_path):
    ids = oracle.tokenizer(tiny["base"]).encode("delete me")
    publish(build_lora_adapter(tiny["base"], tmp_path / "a", seed=41), server.adapters, "gone")
    greedy_ids(client, "gone", ids)
    assert http.delete("/v1/adapters/gone").status_code == 200
    assert "gone" not in model_ids(client)
    with pytest.raises(openai.NotFoundError):
        greedy_ids(client, "gone", ids)
    # Publishing a new version to the same folder serves it again.
    new = build_lora_adapter(tiny["base"], tmp_path / "b", seed=42)
    publish(new, server.adapters, "gone")
    assert greedy_ids(client, "gone", ids) == oracle.greedy(tiny["base"], ids, MAX_NEW, new)


def test_adapters_endpoint_lists_kinds_and_versions(http):
    data = {a["name"]: a for a in http.get("/v1/adapters").json()["data"]}
    assert data["lora-a"]["kind"] == "lora" and data["lora-a"]["rank"] == 8
    assert data["prompt-a"]["kind"] == "soft_prompt" and data["prompt-a"]["num_virtual_tokens"] == 8
    assert all(a["status"] == "ready" for n, a in data.items() if n in ("lora-a", "prompt-a"))
