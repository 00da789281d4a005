"""A start-up that fails stops the server and leaves no trace file behind."""

from __future__ import annotations

import asyncio
import os
import signal

from prometheus_client import CollectorRegistry

from server import app as app_module
from server.config import ServerConfig
from server.metrics import Metrics
from server.startup import trace
from server.state import ServerState


def test_a_failed_start_stops_the_server_and_removes_its_trace(tmp_path, monkeypatch):
    monkeypatch.delenv(trace.TRACE_ENV, raising=False)
    path = trace.begin()
    kills = []
    monkeypatch.setattr(app_module.os, "kill", lambda pid, sig: kills.append((pid, sig)))
    state = ServerState(config=ServerConfig(model=str(tmp_path / "no-such-model")),
                        metrics=Metrics(CollectorRegistry()))
    asyncio.run(app_module._start(state))
    assert state.startup_error and state.engine is None
    assert kills == [(os.getpid(), signal.SIGTERM)]  # the server stops (exit 1 in __main__)
    assert not os.path.exists(path) and trace.TRACE_ENV not in os.environ
