"""The critical path of a start-up from its trace: phases in order, adding up to the total."""

from __future__ import annotations

import pytest

from server.startup.breakdown import breakdown
from server.startup.trace import Event


def events(*rows) -> list[Event]:
    return [Event(process, phase, start, end) for process, phase, start, end in rows]


TRACE = events(
    ("MainProcess", "imports", 100.0, 106.0),
    ("MainProcess", "model files", 106.0, 106.5),
    ("MainProcess", "engine config", 106.6, 107.0),
    ("EngineCore", "imports", 107.2, 112.0),
    ("EngineCore", "plugin", 112.0, 112.2),
    ("EngineCore", "weights", 113.0, 113.5),  # inside `workers`
    ("EngineCore", "workers", 112.5, 114.0),
    ("EngineCore", "profile", 114.0, 118.0),
    ("EngineCore", "kv cache", 118.0, 118.25),
    ("EngineCore", "warm-up", 118.25, 118.5),
    ("MainProcess", "adapters", 119.0, 119.25),
)


def test_phases_in_order_add_up_to_the_total():
    result = breakdown(TRACE, began=100.0, ready=120.0)
    assert result.total == 20.0
    assert list(result.phases) == ["imports", "model files", "engine config", "engine core imports", "plugin",
                                   "workers", "profile", "kv cache", "warm-up", "adapters", "weights", "other"]
    assert result.phases["engine core imports"] == pytest.approx(4.8)
    assert result.phases["weights"] == 0.5
    # `other` is what no phase covers; weights are not counted twice.
    assert sum(s for name, s in result.phases.items() if name != "weights") == pytest.approx(20.0)
    assert result.phases["other"] == pytest.approx(20.0 - 18.15)
    assert result.line() == (
        "start-up 20.0 s to ready: imports 6.0, model files 0.5, engine config 0.4, engine core imports 4.8, "
        "plugin 0.2, workers 1.5 (weights 0.5), profile 4.0, kv cache 0.2, warm-up 0.2, adapters 0.2, other 1.8")


def test_worker_processes_and_missing_phases():
    # Weights loaded in a worker process (the `mp` executor); a trace without engine phases.
    result = breakdown(events(("MainProcess", "imports", 0.0, 5.0), ("VllmWorker-0", "weights", 7.0, 8.0),
                              ("VllmWorker-0", "imports", 1.0, 6.0)), began=0.0, ready=10.0)
    assert result.phases == {"imports": 5.0, "weights": 1.0, "other": 5.0}
    # A worker's imports are not the engine core's.
    assert "engine core imports" not in result.phases


def test_a_prestarted_engine_core_shows_its_imports_beside_the_path():
    # Its imports ran beside the API process's; only what was left at the hand-over is on the path.
    result = breakdown(events(("MainProcess", "imports", 0.0, 6.0), ("EngineCore", "preload", 0.5, 5.5),
                              ("EngineCore", "imports", 6.5, 6.75), ("EngineCore", "plugin", 6.75, 7.0)),
                       began=0.0, ready=8.0)
    assert result.phases == {"imports": 6.0, "engine core imports": 0.25, "plugin": 0.25,
                             "preloaded": 5.0, "other": 1.5}
    assert result.line() == ("start-up 8.0 s to ready: imports 6.0, engine core imports 0.2 (preloaded 5.0), "
                             "plugin 0.2, other 1.5")
