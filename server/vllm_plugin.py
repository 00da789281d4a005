"""Installs made before the engine side moved to `server.in_engine` name this module as their
`vllm.general_plugins` entry point (pyproject.toml now names `server.in_engine.plugin:register`;
the installed metadata changes only on a reinstall): they keep working through this alias."""

from server.in_engine.plugin import ENABLE_ENV, register  # noqa: F401
