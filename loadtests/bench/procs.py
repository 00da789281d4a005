"""Contender server processes: start in their own process group, wait for health, sample the
resident memory of the whole process tree, and always kill the group (also on Ctrl-C/errors)."""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import psutil

_RUNNING: set[ServerProcess] = set()
ROOT = Path(__file__).resolve().parents[2]  # the repository: `python -m server` and friends run from here


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """One contender server: `cmd` runs as a new session so stop() can kill all its children."""

    def __init__(self, name: str, cmd: list[str], log: Path, port: int, env: dict | None = None,
                 health_path: str = "/health") -> None:
        self.name, self.port, self.log = name, port, log
        self.url = f"http://127.0.0.1:{port}"
        self.health_path = health_path
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(log, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log_file, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                                     cwd=ROOT, start_new_session=True)
        _RUNNING.add(self)
        self.peak_rss = 0  # bytes, whole process tree, over the server's life
        self.window_peak_rss = 0  # since the last reset_window_peak()
        self._stop_sampling = threading.Event()
        self._sampler = threading.Thread(target=self._sample_rss, daemon=True)
        self._sampler.start()

    def tree_rss(self) -> int:
        return sum(rss_by_role(self.proc.pid).values())

    def _sample_rss(self) -> None:
        while not self._stop_sampling.wait(0.25):
            rss = self.tree_rss()
            self.peak_rss = max(self.peak_rss, rss)
            self.window_peak_rss = max(self.window_peak_rss, rss)

    def reset_window_peak(self) -> None:
        self.window_peak_rss = self.tree_rss()

    def wait_ready(self, timeout: float = 600) -> float:
        """Block until the health endpoint answers 200; returns the start-up time in seconds."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited during start-up (code {self.proc.returncode}); "
                                   f"log tail:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + self.health_path, timeout=2).status_code == 200:
                    return time.monotonic() - start
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{self.name} not ready after {timeout:.0f} s; log tail:\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        self._log_file.flush()
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        self._stop_sampling.set()
        if self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        # The group may outlive its leader (engine-core workers): make sure it is gone.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._log_file.close()
        _RUNNING.discard(self)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def role(process: psutil.Process, root: int) -> str:
    """What a process of a server's tree is: `server` (the API process, `root`), `engine core`,
    `worker`, or `other` (vLLM's helpers: resource tracker, a not yet claimed prestart)."""
    if process.pid == root:
        return "server"
    title = process.name() + " " + " ".join(process.cmdline())
    return "engine core" if "EngineCore" in title else "worker" if "Worker" in title else "other"


def rss_by_role(root: int) -> dict[str, int]:
    """Resident bytes of the process tree under pid `root`, summed per `role` ({} once gone)."""
    try:
        parent = psutil.Process(root)
        procs = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}
    totals: dict[str, int] = {}
    for p in procs:
        try:
            name = role(p, root)
            totals[name] = totals.get(name, 0) + p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return totals


class CpuSplit:
    """Where the machine's CPU went between two marks: the server's main process, the rest of its
    process tree (engine core, workers) and this process (the load generator, with the bench's
    own memory sampling of the server, a few psutil reads a second), in cores (CPU seconds per
    second). Processes started after the first mark count from their start;
    processes gone by the second are left out."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self._marks: list[tuple[float, dict[int, float]]] = []

    def _cpu_by_pid(self) -> dict[int, float]:
        seconds = {}
        try:
            root = psutil.Process(self.server.proc.pid)
            procs = [root, *root.children(recursive=True), psutil.Process()]
        except psutil.NoSuchProcess:
            return seconds
        for p in procs:
            try:
                times = p.cpu_times()
            except psutil.NoSuchProcess:
                continue
            seconds[p.pid] = times.user + times.system
        return seconds

    def mark(self, _edge: str = "") -> None:
        self._marks.append((time.perf_counter(), self._cpu_by_pid()))

    def cores(self) -> dict[str, float] | None:
        """{"cpu_server_main", "cpu_server_others", "cpu_client"} between the first and last
        mark, or None without two marks."""
        if len(self._marks) < 2:
            return None
        (t0, before), (t1, after) = self._marks[0], self._marks[-1]
        used = {pid: seconds - before.get(pid, 0.0) for pid, seconds in after.items()}
        main, client = self.server.proc.pid, os.getpid()
        others = sum(v for pid, v in used.items() if pid not in (main, client))
        span = t1 - t0
        return {"cpu_server_main": used.get(main, 0.0) / span,
                "cpu_server_others": others / span,
                "cpu_client": used.get(client, 0.0) / span}


def stop_all() -> None:
    for server in list(_RUNNING):
        server.stop()


def _on_signal(signum, frame) -> None:
    # Handled like Ctrl-C: the main program unwinds (its `finally` blocks stop the servers).
    signal.signal(signum, signal.SIG_DFL)  # a second signal kills at once
    raise KeyboardInterrupt(f"signal {signum}")


def install_cleanup() -> None:
    """Kill every contender on exit, Ctrl-C or SIGTERM (call once from the main program)."""
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
