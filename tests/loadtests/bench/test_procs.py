"""CpuSplit against a real process tree: a sleeping parent with a busy child (a few seconds)."""

from __future__ import annotations

import sys
import time

import psutil

from loadtests.bench.procs import CpuSplit, ServerProcess, free_port

# The parent starts a child that spins for 3 s, then waits for it.
TREE = ("import subprocess, sys; subprocess.run([sys.executable, '-c', "
        "'import time\\nend = time.time() + 3\\nwhile time.time() < end: pass'])")


def test_cpu_split_puts_the_busy_child_under_server_others(tmp_path):
    with ServerProcess("tree", [sys.executable, "-c", TREE], tmp_path / "tree.log", free_port()) as server:
        deadline = time.time() + 10
        while not psutil.Process(server.proc.pid).children() and time.time() < deadline:
            time.sleep(0.05)
        split = CpuSplit(server)
        assert split.cores() is None  # no marks yet
        split.mark("start")
        time.sleep(1.5)
        split.mark("end")
        cores = split.cores()
    assert cores["cpu_server_others"] > 0.5  # one spinning core, give or take a busy machine
    assert cores["cpu_server_main"] < 0.2 and cores["cpu_client"] < 0.3
