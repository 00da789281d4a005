"""PreferenceLog: appends are whole (never interleaved, also across processes), durable, and start
on a fresh line after a torn one."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
from pathlib import Path

from server.serving.feedback.preference_log import PreferenceLog

# Big enough that a non-atomic writer (buffered, or one write per line) would interleave.
PAD = "x" * 20_000


def block(writer: str, n: int) -> list[dict]:
    """One judgement's rows: three lines that must stay together, in order."""
    return [{"writer": writer, "n": n, "part": part, "pad": PAD} for part in range(3)]


def assert_whole_blocks(path, expected: int) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines()]  # every line parses
    assert len(rows) == 3 * expected
    for start in range(0, len(rows), 3):
        first = rows[start]
        assert [(r["writer"], r["n"], r["part"]) for r in rows[start:start + 3]] == \
            [(first["writer"], first["n"], part) for part in range(3)]


def test_creates_the_directory_and_appends_lines(tmp_path):
    log = PreferenceLog(tmp_path / "feedback" / "preferences.jsonl")
    log.append([{"prompt": "p", "chosen": "a", "rejected": "b"}])
    log.append([{"prompt": "é", "chosen": "c", "rejected": "d"}])
    assert log.path.read_text(encoding="utf-8").splitlines() == [
        '{"prompt": "p", "chosen": "a", "rejected": "b"}',
        '{"prompt": "é", "chosen": "c", "rejected": "d"}']


def test_one_write_and_an_fsync_per_append(tmp_path, monkeypatch):
    calls = []
    real_write, real_fsync = os.write, os.fsync
    monkeypatch.setattr(os, "write", lambda fd, data: calls.append("write") or real_write(fd, data))
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append("fsync") or real_fsync(fd))
    log = PreferenceLog(tmp_path / "preferences.jsonl")
    log.append(block("t", 0))
    assert calls == ["write", "fsync", "fsync"]  # the new file's directory entry too
    calls.clear()
    log.append(block("t", 1))
    assert calls == ["write", "fsync"]


def test_threads_never_interleave(tmp_path):
    log = PreferenceLog(tmp_path / "preferences.jsonl")

    def work(writer: str) -> None:
        for n in range(20):
            log.append(block(writer, n))

    threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert_whole_blocks(log.path, 6 * 20)


def _append_from_process(path: str, writer: str) -> None:
    log = PreferenceLog(Path(path))  # a thread lock of its own: O_APPEND and flock keep processes apart
    for n in range(20):
        log.append(block(writer, n))


def test_processes_never_interleave(tmp_path):
    path = tmp_path / "preferences.jsonl"
    context = multiprocessing.get_context("fork")  # spawn would import vLLM again in each
    processes = [context.Process(target=_append_from_process, args=(str(path), f"p{i}"))
                 for i in range(3)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(120)
        assert p.exitcode == 0
    assert_whole_blocks(path, 3 * 20)


def test_a_torn_last_line_does_not_swallow_the_next_judgement(tmp_path):
    path = tmp_path / "preferences.jsonl"
    path.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": "cut sh')
    PreferenceLog(path).append([{"prompt": "q", "chosen": "c", "rejected": "d"}])
    last = path.read_text().splitlines()[-1]
    assert json.loads(last) == {"prompt": "q", "chosen": "c", "rejected": "d"}
