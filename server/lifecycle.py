"""How the server process ends: a graceful drain on SIGTERM, and an exit when the engine dies.

- SIGTERM / SIGINT: new requests are refused (503, and `/ready` says so at once), in-flight ones
  get `--shutdown-timeout` seconds to finish, those still running are then aborted in the engine
  (they end with finish_reason "abort"), and the process exits 0.
- Engine death: in-flight requests end with a 503 (or an error event), `/health` answers 503,
  and the process exits with `EXIT_ENGINE_DIED`, so a supervisor that restarts on failure
  restarts it (unless --no-exit-on-engine-death).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import uvicorn

from server.state import ServerState

log = logging.getLogger("server")

EXIT_STARTUP_FAILED = 1
EXIT_ENGINE_DIED = 3
# After the drain's abort, what uvicorn allows the aborted requests to send their last bytes.
_ABORT_GRACE_SECONDS = 5.0


class Server(uvicorn.Server):
    """uvicorn's server, telling the app when a shutdown begins (uvicorn only stops listening)."""

    def __init__(self, config: uvicorn.Config, state: ServerState) -> None:
        super().__init__(config)
        self.state = state

    def handle_exit(self, sig: int, frame) -> None:
        if not self.state.draining:
            self.state.draining = True
            log.info("shutting down: finishing %d in-flight engine requests (at most %g s)",
                     len(self.state.in_flight), self.state.config.shutdown_timeout)
            loop = asyncio.get_running_loop()
            if self.state.paused and self.state.engine is not None:
                # Requests frozen by /pause?mode=keep could not finish during the drain.
                log.info("shutting down: resuming generation paused by /pause")
                self.state.paused = False
                loop.create_task(self.state.engine.resume_generation())
            loop.create_task(abort_after(self.state))
        super().handle_exit(sig, frame)
        # uvicorn re-raises the signal once it has stopped, so the process would die of it; a
        # finished drain is a clean exit (0), and an engine death has its own status.
        self._captured_signals.clear()


def uvicorn_config(app, state: ServerState) -> uvicorn.Config:
    config = state.config
    return uvicorn.Config(app, host=config.host, port=config.port, log_level=config.log_level,
                          timeout_keep_alive=config.keep_alive_timeout,
                          timeout_graceful_shutdown=config.shutdown_timeout + _ABORT_GRACE_SECONDS)


async def abort_after(state: ServerState) -> None:
    """Abort what is still running once the drain's time is up."""
    await asyncio.sleep(state.config.shutdown_timeout)
    if state.in_flight and state.engine is not None and not state.engine.errored:
        log.warning("shutdown timeout: aborting %d engine requests", len(state.in_flight))
        await state.engine.abort(list(state.in_flight))


async def watch_engine(state: ServerState, period: float = 0.5) -> None:
    """Once the engine has died, stop the server (it cannot recover without a restart)."""
    while not (state.engine is not None and state.engine.errored):
        await asyncio.sleep(period)
    state.engine_died = True
    if state.config.exit_on_engine_death:
        log.error("the engine process died; stopping the server (exit status %d)",
                  EXIT_ENGINE_DIED)
        os.kill(os.getpid(), signal.SIGTERM)  # the drain ends in-flight requests with a 503
    else:
        log.error("the engine process died; answering 503 until restarted "
                  "(--no-exit-on-engine-death)")
