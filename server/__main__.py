"""python -m server --model DIR --adapters DIR [--host H] [--port P] [--api-key K] ..."""

from __future__ import annotations

import logging
import sys

import uvicorn

from server.app import create_app
from server.cli_args import parse_dataclass
from server.config import ServerConfig


def main(argv: list[str] | None = None) -> None:
    config = parse_dataclass(ServerConfig, argv, prog="python -m server")
    logging.basicConfig(level=config.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(config)
    uvicorn.run(app, host=config.host, port=config.port, log_level=config.log_level,
                timeout_graceful_shutdown=5)
    if app.state.server.startup_error:
        sys.exit(f"engine start-up failed: {app.state.server.startup_error}")


if __name__ == "__main__":
    main()
