"""python -m server --model DIR --adapters DIR [--host H] [--port P] [--api-key K] ...

`adapter-serve` (the console script pyproject.toml installs) is the same command.

Exit status: 0 after a shutdown (SIGTERM, SIGINT), 1 when the engine failed to start or the
start was refused (an untested vLLM version, a bad --engine-arg, ...), 3 when the engine died
while serving (see server.lifecycle).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.config import ServerConfig

# Only what the start needs at module level: vLLM's engine processes are spawned, and a spawned
# process imports the parent's __main__ module first, so every import here would be paid again
# in the engine core (FastAPI, the protocol models, the routers) on the start-up's critical path.


def main(argv: list[str] | None = None) -> None:
    from adapter_formats.cli_args import parse_dataclass
    from server.config import ServerConfig

    config = parse_dataclass(ServerConfig, argv, prog="python -m server")
    from server import vllm_version

    # Before anything imports vLLM or starts the engine core's interpreter.
    if reason := vllm_version.refusal(config.allow_untested_vllm):
        sys.exit(reason)
    from server import engine_env
    from server.startup import prestart

    engine_env.apply(config)  # before the engine core's interpreter is started

    if config.prestart_engine:
        prestart.start()  # the engine core's imports from now on, beside the server's in _run
    try:
        _run(config)
    finally:
        prestart.release()  # unless the engine core runs in it (refused arguments, a failed start)


def _run(config: ServerConfig) -> None:
    import logging

    from server import engine_passthrough, lifecycle
    from server.app import create_app
    from server.auth import KeysFileError
    from server.startup import trace

    trace.begin()  # the API process's start so far: the interpreter and the imports above
    try:
        engine_passthrough.parse(config.engine_arg)  # refused before the port opens
    except engine_passthrough.EngineArgError as exc:
        sys.exit(str(exc))
    from server.engine import refusal

    if reason := refusal(config):
        sys.exit(reason)
    logging.basicConfig(level=config.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app = create_app(config)
    except KeysFileError as exc:
        sys.exit(f"--api-keys-file: {exc}")
    state = app.state.server
    lifecycle.Server(lifecycle.uvicorn_config(app, state), state).run()
    if state.startup_error:
        print(f"start-up failed: {state.startup_error}", file=sys.stderr)
        sys.exit(lifecycle.EXIT_STARTUP_FAILED)
    if state.engine_died and config.exit_on_engine_death:
        sys.exit(lifecycle.EXIT_ENGINE_DIED)


if __name__ == "__main__":
    main()
