"""The environment the server gives its engine's processes: oneDNN's primitive cache bounded."""

from __future__ import annotations

import os

from server import engine_env
from server.config import ServerConfig


def test_onednn_cache_is_bounded_by_default_and_left_alone_on_request(monkeypatch):
    monkeypatch.delenv(engine_env.ONEDNN_CACHE_ENV, raising=False)
    engine_env.apply(ServerConfig(model="m"))
    assert os.environ[engine_env.ONEDNN_CACHE_ENV] == "128"
    monkeypatch.setenv(engine_env.ONEDNN_CACHE_ENV, "512")  # an operator's own setting
    engine_env.apply(ServerConfig(model="m", onednn_primitive_cache=-1))
    assert os.environ[engine_env.ONEDNN_CACHE_ENV] == "512"
