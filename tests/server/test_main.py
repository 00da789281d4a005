"""The command line: `adapter-serve` is `python -m server`; a bad --engine-arg, or an executor
this machine cannot run, stops it before anything starts."""

from __future__ import annotations

import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from server.__main__ import main

PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"


def test_console_script_runs_the_same_main():
    scripts = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]
    assert scripts["adapter-serve"] == "server.__main__:main"
    # As installed (`pip install -e .`, which `make` reruns whenever pyproject.toml changes).
    [installed] = entry_points(group="console_scripts", name="adapter-serve")
    assert installed.load() is main


@pytest.mark.parametrize("engine_arg, message", [
    ("max_loras=4", "use --max-loras instead"),
    ("quantisation=awq", "did you mean quantization"),
    ("enforce_eager=perhaps", "expected true or false"),
])
def test_bad_engine_arg_exits_with_the_reason(engine_arg, message):
    with pytest.raises(SystemExit) as exc:
        main(["--model", "m", "--engine-arg", engine_arg])
    assert message in str(exc.value.code)


def test_ray_on_cpu_exits_with_the_reason():
    # vLLM's CPU platform cannot place Ray workers; refused before the engine is started.
    with pytest.raises(SystemExit) as exc:
        main(["--model", "m", "--distributed-executor-backend", "ray"])
    assert "Ray only with GPUs" in str(exc.value.code)


def test_a_bad_lora_kernel_cap_exits_with_the_reason(monkeypatch):
    # Read again inside the engine's processes, where it would kill the engine at its first LoRA.
    monkeypatch.setenv("ADAPTER_SERVE_LORA_ISA", "avx1024")
    with pytest.raises(SystemExit) as exc:
        main(["--model", "m"])
    assert "ADAPTER_SERVE_LORA_ISA='avx1024': expected one of native, avx512, portable" in str(exc.value.code)
