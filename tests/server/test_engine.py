"""The engine's configuration: server flags and --engine-arg reach vLLM, never both for one key."""

from __future__ import annotations

import ast
import inspect
import os

import pytest

from server import engine
from server.config import ServerConfig
from server.engine_passthrough import FIXED, SERVER_FLAGS


def set_by_the_server() -> set[str]:
    """Engine arguments server/engine.py sets: AsyncEngineArgs(...) keywords, scheduler fields."""
    tree = ast.parse(inspect.getsource(engine))
    keys = {kw.arg for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, "id", None) == "AsyncEngineArgs" for kw in node.keywords}
    keys |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
             and isinstance(node.ctx, ast.Store) and getattr(node.value, "id", None) == "scheduler"}
    keys.discard(None)  # the **--engine-arg mapping itself
    return keys


def test_every_argument_the_server_sets_is_refused_as_an_engine_arg():
    # A new server flag passed to the engine must join SERVER_FLAGS, or `--engine-arg` could set
    # it a second time (a TypeError at start-up, or a silent override of the flag).
    assert set_by_the_server() - set(SERVER_FLAGS) - set(FIXED) == set()
    assert {"max_num_queued_reqs", "pipeline_parallel_size"} <= set_by_the_server()


@pytest.fixture
def restored_environment():
    env = dict(os.environ)  # vLLM's config checks set variables for their workers
    yield
    os.environ.clear()
    os.environ.update(env)


def test_flags_and_engine_args_reach_the_vllm_config(tiny, restored_environment):
    config = ServerConfig(model=str(tiny["base"]), dtype="float32", max_model_len=256,
                          max_num_batched_tokens=256, enable_prefix_caching=False,
                          pipeline_parallel_size=1, data_parallel_size=1,
                          distributed_executor_backend="mp",
                          engine_arg=["enforce-eager=true", "max_parallel_loading_workers=2"])
    args = engine.engine_args(config)
    assert (args.enforce_eager, args.max_parallel_loading_workers) == (True, 2)
    vllm_config = engine.engine_config(config)
    assert vllm_config.scheduler_config.max_num_batched_tokens == 256
    assert vllm_config.cache_config.enable_prefix_caching is False
    assert vllm_config.model_config.enforce_eager is True
    parallel = vllm_config.parallel_config
    assert (parallel.pipeline_parallel_size, parallel.data_parallel_size,
            parallel.distributed_executor_backend) == (1, 1, "mp")


def test_pipeline_parallel_without_compilation_is_refused_on_cpu(tiny, restored_environment):
    # vLLM's CPU runner would kill the engine at the first request (no pipeline buffers).
    config = ServerConfig(model=str(tiny["base"]), dtype="float32", max_model_len=256, pipeline_parallel_size=2,
                          engine_arg=["enforce-eager=true"])
    with pytest.raises(ValueError, match="--pipeline-parallel-size > 1 needs the compiled model on CPU"):
        engine.prepare_engine(config)


def test_defaults_leave_vllms_defaults(restored_environment):
    args = engine.engine_args(ServerConfig(model="m"))
    assert (args.max_num_batched_tokens, args.enable_prefix_caching,
            args.distributed_executor_backend) == (None, None, None)
    assert args.enable_log_requests is False and args.disable_log_stats is False


@pytest.mark.parametrize("backend", [None, "uni"])
def test_one_cpu_worker_runs_inside_the_engine_core(tiny, restored_environment, backend):
    # vLLM's CPU platform turns `uni` into `mp` (a worker process); the server keeps it `uni`.
    config = ServerConfig(model=str(tiny["base"]), dtype="float32", max_model_len=256,
                          distributed_executor_backend=backend)
    assert engine.engine_config(config).parallel_config.distributed_executor_backend == "uni"


class _Binding:
    """OMPProcessManager's answer: the CPUs vLLM would pin its one CPU worker to, and those it
    would keep for its other processes."""

    def __init__(self, worker, reserved=(), skip=False):
        self.cpu_lists, self.reserved_cpu_list, self.skip_setup = [list(worker)], list(reserved), skip


@pytest.mark.parametrize("cpus, binding, inside", [
    (2, _Binding([0, 1]), True),  # this VM with the soft-prompt cache: nothing reserved
    (2, _Binding([0], reserved=[1]), True),  # 2 cores, one reserved: half the model's cores
    (4, _Binding([0, 1], reserved=[2, 3]), True),  # a KV connector's two reserved of four
    (2, _Binding([], skip=True), True),  # VLLM_CPU_OMP_THREADS_BIND=nobind
    (16, _Binding(range(15), reserved=[15]), False),  # a larger machine: vLLM's placement
    (4, _Binding([0, 1, 2], reserved=[3]), False),
    (4, _Binding([0, 1]), False),  # SMT siblings (2, 3) left out
    (2, _Binding([0]), False),  # a user's list
])
def test_the_worker_joins_the_engine_core_only_where_vllms_pinning_would_halve_it(
        tiny, restored_environment, monkeypatch, cpus, binding, inside):
    import vllm.utils.ompmultiprocessing as omp

    monkeypatch.setattr(omp, "OMPProcessManager", lambda vllm_config: binding)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)))
    config = ServerConfig(model=str(tiny["base"]), dtype="float32", max_model_len=256)
    backend = engine.engine_config(config).parallel_config.distributed_executor_backend
    assert backend == ("uni" if inside else "mp")


def test_an_unknown_platform_for_binding_keeps_vllms_worker(tiny, restored_environment, monkeypatch):
    import vllm.utils.ompmultiprocessing as omp

    def unsupported(vllm_config):
        raise RuntimeError("this architecture doesn't support auto CPU binding.")

    monkeypatch.setattr(omp, "OMPProcessManager", unsupported)
    config = ServerConfig(model=str(tiny["base"]), dtype="float32", max_model_len=256)
    assert engine.engine_config(config).parallel_config.distributed_executor_backend == "mp"
    config.distributed_executor_backend = "uni"  # asked for: kept
    assert engine.engine_config(config).parallel_config.distributed_executor_backend == "uni"


def test_an_engine_arg_read_first_does_not_cost_lora_its_compiled_model(tiny, restored_environment, monkeypatch):
    # `python -m server` reads --engine-arg values with vLLM's own parser, which makes vLLM load
    # its plugins in this process before prepare_engine sets the plugin's flag: the plugin then
    # did nothing here, and vLLM's CPU rule (no compilation with LoRA) applied to the config.
    from vllm import plugins
    from vllm.config import CompilationMode
    from vllm.platforms import current_platform

    from server.in_engine import plugin
    from server.vllm_patches import theirs

    # The suite runs on vllm-cpu (pyproject's `cpu` extra), whose platform has the rule.
    assert current_platform.is_cpu(), "the suite's engine is vLLM's CPU build"
    cls = type(current_platform)
    for name in ("get_punica_wrapper", "check_and_update_config"):  # vLLM's own, restored after
        monkeypatch.setattr(cls, name, classmethod(theirs(cls, name)))
    monkeypatch.setattr(cls, "_adapter_serve_compiles_lora", False, raising=False)
    monkeypatch.delenv(plugin.ENABLE_ENV, raising=False)
    monkeypatch.setattr(plugins, "plugins_loaded", False)
    plugins.load_general_plugins()  # what reading an --engine-arg does first
    config = ServerConfig(model=str(tiny["base"]), dtype="float32", max_model_len=256,
                          engine_arg=["max-parallel-loading-workers=2"])
    assert engine.prepare_engine(config).compilation_config.mode == CompilationMode.DYNAMO_TRACE_ONCE


def test_lora_slots_are_sized_from_memory_on_cpu(tiny, restored_environment):
    """Without --max-loras the CPU engine gets as many adapter slots as --lora-slots-gib holds,
    never more than its LoRA cache (--max-cpu-loras) can back."""
    config = ServerConfig(model=str(tiny["base"]), dtype="float32", max_model_len=256)
    slots = engine.lora_slots(config)
    assert slots.count == 256 and "--lora-slots-gib 1" in slots.why  # a tiny model: the cap
    assert engine.engine_config(config).lora_config.max_loras == 256
    small = engine.lora_slots(ServerConfig(model=str(tiny["base"]), dtype="float32",
                                           lora_slots_gib=4 * slots.slot_bytes / 2**30))
    assert small.count == 4
    capped = ServerConfig(model=str(tiny["base"]), dtype="float32", max_model_len=256, max_cpu_loras=12)
    assert engine.engine_config(capped).lora_config.max_loras == 12
    given = ServerConfig(model=str(tiny["base"]), dtype="float32", max_model_len=256, max_loras=3)
    assert engine.engine_config(given).lora_config.max_loras == 3
