"""Time the start-up phases inside the engine's processes (called by `server.in_engine.plugin`).

vLLM logs some of these itself, each in its own process and wording; here each becomes one
trace event (`server.startup.trace`) that the server adds up once the engine is ready:

    imports       process creation -> this plugin (interpreter, torch and vLLM imports)
    plugin        our plugin's own work (LoRA kernels, grammars, lifeline)
    workers       the executor's start: worker processes (if any), device, model build
    weights       the worker's load_model (inside `workers`)
    profile       determine_available_memory: on CPU the compile warm-up, on GPU a profile run
    kv cache      allocating the KV cache
    warm-up       compile_or_warm_up_model (CUDA graphs on GPU; little on CPU)

Methods are wrapped on the classes the engine actually instantiates (the executor's class is
known only when it is built, and vLLM's uni-process executor overrides some of them).
"""

from __future__ import annotations

import os
import time

from server.in_engine import lifeline
from server.startup import trace
from server.vllm_patches import mark

EXECUTOR_PHASES = {"determine_available_memory": "profile", "initialize_from_config": "kv cache",
                   "compile_or_warm_up_model": "warm-up"}
_installed = False


def _wrap(cls: type, method: str, phase: str) -> None:
    fn = getattr(cls, method, None)
    if fn is not None and not getattr(fn, "__adapter_serve_timed__", False):
        setattr(cls, method, trace.timed(phase, fn))


def install(plugin_started: float) -> None:
    """Record this engine process's start (up to `plugin_started`) and the plugin's work (up to
    now), and time what it does next. Nothing in the server's own process, whose phases
    `server.app` records."""
    global _installed
    # vLLM loads plugins more than once in some processes.
    if _installed or os.environ.get(lifeline.SERVER_PID_ENV) == str(os.getpid()):
        return
    _installed = True
    trace.record("imports", trace.process_started_at(), plugin_started)
    trace.record("plugin", plugin_started)

    from vllm.v1.executor.abstract import Executor

    original_init = Executor.__init__

    def executor_init(self, *args, **kwargs):
        for method, phase in EXECUTOR_PHASES.items():
            _wrap(type(self), method, phase)
        start = time.time()
        try:
            original_init(self, *args, **kwargs)
        finally:
            trace.record("workers", start)

    Executor.__init__ = mark("executor-phases-timed", executor_init, original_init)
    # Weights load where the model lives (a worker process, or the engine core without one),
    # in a worker class known once the executor has built it.
    from vllm.v1.worker.worker_base import WorkerWrapperBase

    original_init_worker = WorkerWrapperBase.init_worker

    def init_worker(self, *args, **kwargs):
        original_init_worker(self, *args, **kwargs)
        _wrap(type(self.worker), "load_model", "weights")

    WorkerWrapperBase.init_worker = mark("worker-load-timed", init_worker, original_init_worker)
