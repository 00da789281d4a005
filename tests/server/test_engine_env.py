"""The environment the server gives its engine's processes: oneDNN's primitive caches bounded."""

from __future__ import annotations

import os

from server import engine_env
from server.config import ServerConfig


CACHES = (engine_env.ONEDNN_CACHE_ENV, engine_env.IDEEP_CACHE_ENV)


def test_both_primitive_caches_are_bounded_by_default_and_left_alone_on_request(monkeypatch):
    for name in CACHES:
        monkeypatch.delenv(name, raising=False)
    engine_env.apply(ServerConfig(model="m"))
    default = str(ServerConfig(model="m").onednn_primitive_cache)
    assert int(default) > 0 and [os.environ[name] for name in CACHES] == [default, default]
    for name in CACHES:
        monkeypatch.setenv(name, "512")  # an operator's own setting
    engine_env.apply(ServerConfig(model="m", onednn_primitive_cache=-1))
    assert [os.environ[name] for name in CACHES] == ["512", "512"]

