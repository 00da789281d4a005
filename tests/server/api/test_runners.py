"""Each runner's endpoints are mounted, the other runner's answer 400 (no engine needed: the
refusal depends on --runner alone)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from server.app import create_app
from server.config import ServerConfig

KEY = {"Authorization": "Bearer k"}
GENERATE = ("/v1/completions", "/v1/chat/completions", "/v1/responses")
POOLING = ("/v1/embeddings", "/classify")


def make_client(tmp_path, runner: str) -> TestClient:
    config = ServerConfig(model=str(tmp_path), adapters=str(tmp_path / "adapters"), runner=runner,
                          api_key=["k"])
    app = create_app(config, start=False, registry=CollectorRegistry())
    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize("runner, refused, other", [
    ("generate", POOLING, "pooling"),
    ("pooling", GENERATE, "generate"),
])
def test_other_runners_endpoints_are_400(tmp_path, runner, refused, other):
    client = make_client(tmp_path, runner)
    for path in refused:
        r = client.post(path, json={"anything": 1}, headers=KEY)
        assert r.status_code == 400, (path, r.text)
        error = r.json()["error"]
        assert error["code"] == "wrong_runner" and error["type"] == "invalid_request_error"
        assert f"{path} is not served here" in error["message"]
        assert f"--runner {other}" in error["message"]
        assert client.post(path, json={}).status_code == 401  # the key is checked first


@pytest.mark.parametrize("runner, served, refused", [
    ("generate", GENERATE, POOLING),
    ("pooling", POOLING, GENERATE),
])
def test_served_endpoints_and_the_openapi_document(tmp_path, runner, served, refused):
    client = make_client(tmp_path, runner)
    paths = client.get("/openapi.json").json()["paths"]
    assert set(served) <= set(paths) and not set(refused) & set(paths)
    for path in served:  # mounted: the engine is not up yet
        assert client.post(path, json={}, headers=KEY).status_code in (400, 503)


def test_feedback_page_only_where_answers_are_generated(tmp_path):
    assert make_client(tmp_path, "generate").get("/ui").status_code == 200
    pooling = make_client(tmp_path, "pooling")
    assert pooling.get("/ui").status_code == 404
    assert pooling.post("/ui/api/comparisons", json={}, headers=KEY).status_code == 404
