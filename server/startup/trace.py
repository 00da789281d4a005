"""Phase timings from every process of one start-up, gathered in one file.

The server creates the file and names it in `TRACE_ENV` before it starts the engine; the
engine's processes inherit the variable and append one JSON line per phase (an `O_APPEND`
write of one short line is atomic, so processes never interleave). Times are wall-clock
(`time.time()`): the only clock the processes share.
"""

from __future__ import annotations

import contextlib
import functools
import json
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

TRACE_ENV = "ADAPTER_SERVE_STARTUP_TRACE"


@dataclass(frozen=True)
class Event:
    process: str
    phase: str
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


_clock_restarted_at: float | None = None


def process_started_at() -> float:
    """When this process was created (before the interpreter and its imports), or when its
    start-up began if that was later (`restart_clock`)."""
    if _clock_restarted_at is not None:
        return _clock_restarted_at
    import psutil  # a vLLM dependency

    return psutil.Process().create_time()


def restart_clock(at: float) -> None:
    """This process's start-up began at `at`, not at its creation: a process created ahead of
    its job (`server.startup.prestart`), whose earlier time overlapped other phases."""
    global _clock_restarted_at
    _clock_restarted_at = at


def process_name() -> str:
    # vLLM names its processes EngineCore, VllmWorker-0, ... (MainProcess for the API server).
    return multiprocessing.current_process().name


def record(phase: str, start: float, end: float | None = None) -> None:
    """Append one phase of this process to the start-up trace (nothing when none is open)."""
    path = os.environ.get(TRACE_ENV)
    if not path:
        return
    line = json.dumps({"process": process_name(), "phase": phase, "start": start,
                       "end": time.time() if end is None else end}) + "\n"
    with contextlib.suppress(OSError):  # timing must never break a start-up
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    start = time.time()
    try:
        yield
    finally:
        record(name, start)


def timed(name: str, fn: Callable) -> Callable:
    """`fn`, recording each call as phase `name`."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with phase(name):
            return fn(*args, **kwargs)
    wrapper.__adapter_serve_timed__ = True
    return wrapper


def read(path: str | Path) -> list[Event]:
    events = []
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                row = json.loads(line)
                events.append(Event(row["process"], row["phase"], float(row["start"]), float(row["end"])))
    return events


def begin() -> str:
    """Open this start-up's trace (inherited by the engine's processes) with the API process's
    own imports, up to now; returns its path."""
    import tempfile

    now = time.time()
    fd, path = tempfile.mkstemp(prefix="adapter-serve-startup-", suffix=".jsonl")
    os.close(fd)
    os.environ[TRACE_ENV] = path
    record("imports", process_started_at(), now)
    return path


def end() -> tuple[list[Event], float] | None:
    """Close the trace: its events and the API process's creation time (None if none is open)."""
    path = os.environ.pop(TRACE_ENV, None)
    if path is None:
        return None
    events = read(path)
    with contextlib.suppress(OSError):
        os.unlink(path)
    return events, process_started_at()
