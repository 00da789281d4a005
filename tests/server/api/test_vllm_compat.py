"""vLLM's runtime LoRA API, /server_info and /pause, /resume, as RL trainers call them (TRL's
AsyncGRPO client: trl/experimental/async_grpo/vllm_client.py), on a scripted engine."""

from __future__ import annotations

import json

import pytest

from tests.e2e.helpers import publish


@pytest.fixture
def trainer_dir(tmp_path_factory):
    """An RL trainer's output folder, outside the adapters directory."""
    return tmp_path_factory.mktemp("trainer-out")


@pytest.fixture
def client(make_client, trainer_dir):
    return make_client(lora_roots=[str(trainer_dir)], engine=None)


def load(client, name, path, **extra):
    return client.post("/v1/load_lora_adapter", json={"lora_name": name, "lora_path": str(path), **extra})


def engine_loras(client) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(client.get("/metrics").text):
        if family.name == "vllm:num_cpu_loaded_lora_adapters":
            return family.samples[0].value
    raise AssertionError("no vllm:num_cpu_loaded_lora_adapters")


def served(client) -> set[str]:
    return {m["id"] for m in client.get("/v1/models").json()["data"]}


def test_versions_load_serve_and_unload_as_on_vllm(client, tiny, trainer_dir):
    for version in (1, 2):
        publish(tiny["lora-a"], trainer_dir, f"policy-v{version}")
        r = load(client, f"policy-v{version}", trainer_dir / f"policy-v{version}", load_inplace=False)
        assert r.status_code == 200 and r.text == f"Success: LoRA adapter 'policy-v{version}' added successfully."
    assert {"policy-v1", "policy-v2"} <= served(client)
    r = client.post("/v1/completions", json={"model": "policy-v2", "prompt": "hi", "max_tokens": 3})
    assert r.status_code == 200 and r.json()["model"] == "policy-v2"

    assert engine_loras(client) == 2
    r = client.post("/v1/unload_lora_adapter", json={"lora_name": "policy-v1"})
    assert r.status_code == 200 and "removed" in r.text
    assert "policy-v1" not in served(client) and "policy-v2" in served(client)
    r = client.post("/v1/completions", json={"model": "policy-v1", "prompt": "hi", "max_tokens": 3})
    assert r.status_code == 404  # a stale version is never answered
    assert engine_loras(client) == 1  # and the engine let it go
    # Trainer folders are never scanned: only what was loaded by name is served from them.
    publish(tiny["lora-a"], trainer_dir, "unloaded")
    assert "unloaded" not in served(client)


def test_a_name_already_served_needs_load_inplace(client, tiny, trainer_dir):
    publish(tiny["lora-a"], trainer_dir, "a")
    publish(tiny["lora-b"], trainer_dir, "b")
    assert load(client, "policy", trainer_dir / "a").status_code == 200
    r = load(client, "policy", trainer_dir / "b")
    assert r.status_code == 400 and "load_inplace" in r.json()["error"]["message"]
    assert r.json()["error"]["param"] == "lora_name"
    assert load(client, "policy", trainer_dir / "b", load_inplace=True).status_code == 200
    adapters = {a["name"]: a for a in client.get("/v1/adapters").json()["data"]}
    assert adapters["policy"]["rank"] == 16  # lora-b's rank: the in-place load took effect


def test_relative_paths_are_inside_the_adapters_directory(client, tiny, tmp_path):
    publish(tiny["lora-a"], tmp_path, "folder")
    assert load(client, "renamed", "folder").status_code == 200
    assert "renamed" in served(client)


@pytest.mark.parametrize("path, status, words", [
    ("/etc", 400, "outside the adapters directory"),
    ("../trainer-out", 400, "outside the adapters directory"),
    ("missing", 404, "no adapter"),
])
def test_paths_outside_the_roots_or_empty_are_refused(client, path, status, words):
    r = load(client, "x", path)
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert words in body["message"] and body["param"] == "lora_path"


def test_a_symlink_out_of_a_root_is_refused(client, tiny, trainer_dir, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    publish(tiny["lora-a"], elsewhere, "real")
    (trainer_dir / "link").symlink_to(elsewhere / "real")
    r = load(client, "x", trainer_dir / "link")
    assert r.status_code == 400 and "outside" in r.json()["error"]["message"]


def test_what_cannot_be_served_is_a_4xx(client, tiny, trainer_dir):
    publish(tiny["prompt-a"], trainer_dir, "soft")  # this client's registry serves no soft prompts
    r = load(client, "soft", trainer_dir / "soft")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_adapter"
    r = load(client, "base", trainer_dir / "soft")
    assert r.status_code == 409
    r = load(client, "bad/name", trainer_dir / "soft")
    assert r.status_code == 400 and r.json()["error"]["param"] == "lora_name"
    r = load(client, "x", trainer_dir / "soft", is_3d_lora_weight=True)
    assert r.status_code == 400
    r = client.post("/v1/load_lora_adapter", json={"lora_name": "x"})
    assert r.status_code == 400 and "lora_path" in r.text
    r = client.post("/v1/unload_lora_adapter", json={"lora_name": "never-loaded"})
    assert r.status_code == 404
    assert r.json()["error"]["message"] == "The lora adapter 'never-loaded' cannot be found."


def test_management_rights_are_needed(make_client, tiny, trainer_dir, tmp_path_factory):
    from tests.conftest import KEYS_FILE

    keys = tmp_path_factory.mktemp("keys") / "keys.yaml"
    keys.write_text(KEYS_FILE)
    client = make_client(lora_roots=[str(trainer_dir)], api_keys_file=str(keys))
    publish(tiny["lora-a"], trainer_dir, "a")
    for method, path, body in (("post", "/v1/load_lora_adapter", {"lora_name": "a", "lora_path": str(trainer_dir / "a")}),
                               ("post", "/v1/unload_lora_adapter", {"lora_name": "a"}),
                               ("get", "/server_info", None), ("post", "/pause", None),
                               ("post", "/resume", None)):
        assert client.request(method, path, json=body).status_code == 401
        r = client.request(method, path, json=body, headers={"Authorization": "Bearer key-loras"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "permission_denied"
    r = client.post("/v1/load_lora_adapter", headers={"Authorization": "Bearer key-manager"},
                    json={"lora_name": "a", "lora_path": str(trainer_dir / "a")})
    assert r.status_code == 200


def test_server_info_reports_the_lora_limits(client):
    info = client.get("/server_info", params={"config_format": "json"}).json()["vllm_config"]
    assert info["lora_config"]["max_loras"] == 3 and info["lora_config"]["max_lora_rank"] == 16
    assert info["parallel_config"]["data_parallel_size"] == 1
    json.dumps(info)  # plain JSON throughout
    assert client.get("/server_info", params={"config_format": "yaml"}).status_code == 400


def test_pause_keep_and_resume(client):
    engine = client.app.state.server.engine
    assert client.post("/pause", params={"mode": "keep"}).json() == {"status": "paused"}
    assert engine.paused == "keep" and client.app.state.server.paused
    assert client.get("/is_paused").json() == {"is_paused": True}
    assert client.post("/resume").json() == {"status": "resumed"}
    assert client.get("/is_paused").json() == {"is_paused": False}
    assert client.post("/pause", params={"mode": "sometimes"}).status_code == 400
