"""Engine processes die with the server, however the server dies (called from
`server.in_engine.plugin`, which vLLM runs in each process it starts).

`kill -9` of the server (the OOM killer, a container runtime's timeout) gives it no chance to
stop its engine, and vLLM's engine core and workers would run on, holding the model's memory (on
a GPU, the whole card; vLLM issue #55510). So every engine process watches the server process
and kills itself once it is gone. Polling (every `POLL_SECONDS`) rather than a parent-death
signal: the workers' parent is the engine core, not the server, and Linux's PDEATHSIG fires when
the parent *thread* exits, which for the engine core is a thread of the server's pool.
"""

from __future__ import annotations

import os
import signal
import threading
import time

SERVER_PID_ENV = "ADAPTER_SERVE_SERVER_PID"
"""The server's pid, set by server.engine before it starts the engine."""

POLL_SECONDS = 1.0


def alive(pid: int) -> bool:
    """Whether `pid` runs: a zombie (dead, not yet reaped by its parent) does not."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            # "pid (comm) state ...": the state follows the last ')' (comm may hold one).
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (not Linux): existence only
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def watch() -> bool:
    """In an engine process of this server, start the watch; returns whether it did."""
    value = os.environ.get(SERVER_PID_ENV)
    if not value or int(value) == os.getpid():
        return False  # not started by the server, or the server itself
    server = int(value)

    def run() -> None:
        while alive(server):
            time.sleep(POLL_SECONDS)
        os.kill(os.getpid(), signal.SIGKILL)  # nothing to save: the server is gone

    threading.Thread(target=run, name="adapter-serve-lifeline", daemon=True).start()
    return True
