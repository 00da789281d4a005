"""The start-up trace: phases appended by any process, read back in order."""

from __future__ import annotations

import multiprocessing
import os
import time

from server.startup import trace


def _child_records(path: str) -> None:
    os.environ[trace.TRACE_ENV] = path
    trace.record("imports", time.time() - 1.0)


def test_begin_records_the_api_imports_and_end_reads_every_process(monkeypatch):
    monkeypatch.delenv(trace.TRACE_ENV, raising=False)
    path = trace.begin()
    try:
        assert os.environ[trace.TRACE_ENV] == path
        with trace.phase("model files"):
            pass
        # Another process appends to the same file (as the engine's processes do).
        child = multiprocessing.get_context("spawn").Process(target=_child_records, args=(path,),
                                                             name="EngineCore")
        child.start()
        child.join(60)
        assert child.exitcode == 0
        events, began = trace.end()
    finally:
        monkeypatch.delenv(trace.TRACE_ENV, raising=False)
    assert not os.path.exists(path) and trace.TRACE_ENV not in os.environ
    assert [(e.process, e.phase) for e in events] == [
        ("MainProcess", "imports"), ("MainProcess", "model files"), ("EngineCore", "imports")]
    imports = events[0]
    assert imports.start == began <= imports.end  # from this process's creation
    assert abs(events[2].seconds - 1.0) < 0.1


def test_timed_records_each_call_and_keeps_the_result(tmp_path, monkeypatch):
    path = tmp_path / "trace.jsonl"
    path.touch()
    monkeypatch.setenv(trace.TRACE_ENV, str(path))
    slow = trace.timed("profile", lambda x: (time.sleep(0.05), x * 2)[1])
    assert slow(21) == 42
    [event] = trace.read(path)
    assert event.phase == "profile" and event.seconds >= 0.05


def test_nothing_is_recorded_without_a_trace_and_bad_lines_are_skipped(tmp_path, monkeypatch):
    monkeypatch.delenv(trace.TRACE_ENV, raising=False)
    trace.record("imports", 0.0)  # no file named: a no-op
    assert trace.end() is None
    path = tmp_path / "trace.jsonl"
    path.write_text('{"process": "EngineCore", "phase": "plugin", "start": 1, "end": 2}\nnot json\n{"phase": 3}\n')
    assert [e.phase for e in trace.read(path)] == ["plugin"]
