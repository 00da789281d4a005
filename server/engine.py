"""Build the one vLLM `AsyncLLM` engine the server runs on."""

from __future__ import annotations

import logging
import os

from vllm.config import StructuredOutputsConfig, VllmConfig
from vllm.engine.arg_utils import AsyncEngineArgs
from vllm.platforms import current_platform
from vllm.usage.usage_lib import UsageContext
from vllm.v1.engine.async_llm import AsyncLLM

from server import engine_env, engine_metrics, engine_passthrough, vllm_version
from server import lora_slots as lora_slots_
from server.config import ServerConfig
from server.in_engine import lifeline, lora_residency, plugin, quantized_bases, soft_prompt_cache
from server.in_engine.grammars import json_schema
from server.in_engine.lora_ops import install as lora_ops_install
from server.startup import model_info, prestart, trace

log = logging.getLogger("server")


def lora_slots(config: ServerConfig) -> lora_slots_.Slots:
    """The engine's LoRA slots (`max_loras`): --max-loras, or sized from --lora-slots-gib."""
    text_config = None
    if config.max_loras is None and current_platform.is_cpu():
        from transformers import AutoConfig

        try:  # a local directory or the hub cache: never a download (vLLM fetches what it needs)
            text_config = AutoConfig.from_pretrained(
                config.model, trust_remote_code=config.trust_remote_code,
                local_files_only=True).get_text_config()
        except (OSError, ValueError):  # vLLM says what is wrong with the model, when it loads it
            return lora_slots_.Slots(lora_slots_.DEFAULT_SLOTS_ELSEWHERE, None,
                                     "the default: the model's config is not on disk yet")
    dtype = config.dtype
    if dtype == "auto" and text_config is not None:
        dtype = str(getattr(text_config, "dtype", None) or getattr(text_config, "torch_dtype", None)
                    or "float32").removeprefix("torch.")
    return lora_slots_.resolve(config.max_loras, config.lora_slots_gib, config.max_cpu_loras,
                               current_platform.is_cpu(), text_config, config.max_lora_rank, dtype)


def engine_args(config: ServerConfig, max_loras: int | None = None) -> AsyncEngineArgs:
    """`max_loras`: the slots already resolved (`lora_slots`), so that start-up reads the model's
    config for them once."""
    soft_prompts = config.serves_soft_prompts
    kv_gib = config.kv_cache_gib
    if kv_gib is None and current_platform.is_cpu():
        # vLLM's CPU default derives the KV cache from a memory fraction minus the worker's
        # current RSS, which fails or varies with what else runs; a fixed size does not.
        kv_gib = 2.0
    return AsyncEngineArgs(
        model=config.model,
        served_model_name=config.model_name,
        tokenizer=config.model,
        runner=config.runner,
        convert=config.convert,
        dtype=config.dtype,
        seed=config.seed,
        max_model_len=config.max_model_len,
        tensor_parallel_size=config.tensor_parallel_size,
        pipeline_parallel_size=config.pipeline_parallel_size,
        data_parallel_size=config.data_parallel_size,
        distributed_executor_backend=config.distributed_executor_backend,
        gpu_memory_utilization=config.gpu_memory_utilization,
        kv_cache_memory_bytes=None if kv_gib is None else int(kv_gib * 2**30),
        max_num_seqs=config.max_num_seqs,
        max_num_batched_tokens=config.max_num_batched_tokens,
        enable_prefix_caching=config.enable_prefix_caching,
        block_size=config.block_size,
        max_logprobs=config.max_logprobs,
        trust_remote_code=config.trust_remote_code,
        enable_lora=True,
        worker_extension_cls=lora_residency.EXTENSION,
        max_loras=max_loras if max_loras is not None else lora_slots(config).count,
        max_lora_rank=config.max_lora_rank,
        max_cpu_loras=config.max_cpu_loras,
        enable_prompt_embeds=soft_prompts,
        kv_transfer_config=(soft_prompt_cache.kv_transfer_config(config.soft_prompt_kv_cache_mib)
                            if soft_prompts and config.soft_prompt_kv_cache_mib > 0
                            else None),
        structured_outputs_config=StructuredOutputsConfig(
            backend=config.structured_outputs_backend),
        # Every other engine argument (--engine-arg); those set above are refused there.
        **engine_passthrough.parse(config.engine_arg),
    )


def engine_config(config: ServerConfig) -> VllmConfig:
    slots = lora_slots(config)
    log.info("LoRA slots (adapters in one batch): %d, from %s", slots.count, slots.why)
    vllm_config: VllmConfig = engine_args(config, slots.count).create_engine_config(
        UsageContext.OPENAI_API_SERVER)
    scheduler = vllm_config.scheduler_config
    if config.max_queued_requests is not None:
        # vLLM's limit counts running and waiting requests alike; ours counts the waiting ones.
        scheduler.max_num_queued_reqs = scheduler.max_num_seqs + config.max_queued_requests
    scheduler.max_num_queued_tokens = config.max_queued_tokens
    parallel = vllm_config.parallel_config
    if (current_platform.is_cpu() and parallel.world_size == 1
            and (config.distributed_executor_backend == "uni"
                 or config.distributed_executor_backend is None
                 and worker_joins_engine_core(vllm_config))):
        # One worker runs inside the engine-core process. vLLM's CPU platform always starts it
        # in a process of its own (`mp`), to pin its OpenMP threads from a fresh process; on a
        # small machine that third process costs a start (interpreter, torch and vLLM imports)
        # and, while serving, the engine core and the worker busy-poll the queue between them
        # on cores the model needs.
        parallel.distributed_executor_backend = "uni"
    return vllm_config


def worker_joins_engine_core(vllm_config: VllmConfig) -> bool:
    """Whether the one CPU worker runs inside the engine core rather than in vLLM's pinned
    worker process. vLLM pins the worker's threads to one logical CPU per physical core of one
    NUMA node, less cores it reserves for its other processes (one, two with a KV connector such
    as the soft-prompt cache). Inside the engine core the threads are not pinned and use every
    CPU this process may run on; that is chosen only where the two differ by nothing but a
    reservation taking half the cores or more (a 2-core machine: measured, the API process needs
    about a tenth of a core there, the model both), or where vLLM would pin nothing
    (`VLLM_CPU_OMP_THREADS_BIND=nobind`). SMT siblings, several NUMA nodes, a user's CPU list or
    a larger machine keep vLLM's own process and placement, as stock vLLM runs it."""
    from vllm.utils.ompmultiprocessing import OMPProcessManager

    try:
        binding = OMPProcessManager(vllm_config)
        if binding.skip_setup:
            return True
        worker = set(binding.cpu_lists[0])
        allowed = os.sched_getaffinity(0)
    except Exception:  # noqa: BLE001 - a platform vLLM cannot pin on: leave it vLLM's way
        return False
    return (worker | set(binding.reserved_cpu_list) == allowed
            and (worker == allowed or 2 * len(worker) <= len(allowed)))


def refusal(config: ServerConfig) -> str | None:
    """Why the engine cannot start with `config` on this machine, found before the port opens
    (vLLM would fail in its engine process, after its imports), or None."""
    if config.distributed_executor_backend == "ray" and current_platform.is_cpu():
        # vLLM places Ray workers by accelerator; its CPU platform names none and refuses
        # ("current platform cpu does not support ray").
        return ("--distributed-executor-backend ray: vLLM runs on Ray only with GPUs (or other "
                "accelerators); on CPU use mp or uni, and several servers for several machines")
    from server.in_engine.lora_ops import native

    try:
        native.isa()  # read again in the engine's processes, where a bad value would kill them
    except ValueError as e:
        return str(e)
    return None


def _bind_cpu_workers(vllm_config: VllmConfig) -> None:
    """Several CPU workers per engine (tensor or pipeline parallel) on fewer NUMA nodes than
    workers: share the cores out among them. vLLM's default binding (`auto`) gives each worker a
    NUMA node of its own and refuses to start otherwise ("Not enough allowed NUMA nodes"), so on
    a one-node machine --tensor-parallel-size 2 failed after the engine's imports.
    `VLLM_CPU_SIM_MULTI_NUMA` is vLLM's own switch for this split. A binding the user chose
    (`VLLM_CPU_OMP_THREADS_BIND`, or the switch itself) is left alone."""
    parallel = vllm_config.parallel_config
    workers = parallel.tensor_parallel_size * parallel.pipeline_parallel_size
    if workers == 1 or os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "auto") != "auto" \
            or "VLLM_CPU_SIM_MULTI_NUMA" in os.environ:
        return
    from vllm.utils.cpu_resource_utils import get_visible_memory_node

    if len(get_visible_memory_node()) < workers:
        os.environ["VLLM_CPU_SIM_MULTI_NUMA"] = "1"


def _refuse_eager_pipeline(vllm_config: VllmConfig) -> None:
    """Pipeline parallelism without compilation kills the engine at its first request on CPU
    (vLLM 0.32): the CPU model runner skips its warm-up run when nothing is compiled, and that run
    is what allocates the buffers later pipeline stages receive activations in
    (`assert self.intermediate_tensors is not None`). Refused at start-up instead."""
    from vllm.config import CompilationMode

    if vllm_config.parallel_config.pipeline_parallel_size > 1 \
            and vllm_config.compilation_config.mode == CompilationMode.NONE:
        raise ValueError("--pipeline-parallel-size > 1 needs the compiled model on CPU (vLLM 0.32 allocates "
                         "the pipeline's activation buffers only in the compile warm-up); drop "
                         "enforce_eager / compilation mode 0")


def prepare_engine(config: ServerConfig) -> VllmConfig:
    """The engine's configuration, with what the engine's processes read from the environment
    (our vLLM plugin and LoRA ops switched on, the lifeline's server) set in this process, which
    they inherit. Also what `loadtests.bench.offline --engine ours` runs in-process."""
    # An untested vLLM refused (or warned about, when forced) whatever started the engine.
    vllm_version.check(config.allow_untested_vllm)
    # Inherited by the engine's processes, where it switches our vLLM plugin on.
    engine_env.apply(config)  # also for an engine started without `python -m server` (the bench)
    os.environ[plugin.ENABLE_ENV] = "1"
    os.environ[lifeline.SERVER_PID_ENV] = str(os.getpid())
    os.environ[lora_ops_install.ENABLE_ENV] = "1" if config.fast_lora_ops else "0"
    os.environ[json_schema.LIMIT_ENV] = "" if config.json_max_whitespace < 0 \
        else str(config.json_max_whitespace)
    if config.fast_lora_ops:
        # The CPU platform's config rule the plugin changes (compiled LoRA) runs in this process,
        # where the engine's config is built. vLLM loads its plugins once per process, on first
        # need: before the flag above was set when an --engine-arg was read first (with vLLM's
        # own parser), and the plugin did nothing then. So installed here, whatever came first.
        lora_ops_install.install()
    model_info.install()
    with trace.phase("engine config"):
        vllm_config = engine_config(config)
    if current_platform.is_cpu():
        _refuse_eager_pipeline(vllm_config)
        _bind_cpu_workers(vllm_config)
        quantized_bases.warn_if_inexact(getattr(vllm_config.model_config.hf_config,
                                                "quantization_config", None))
    return vllm_config


def start_engine(config: ServerConfig) -> AsyncLLM:
    """Start the engine (the engine-core process: spawned, or the prestarted one; seconds to
    tens of seconds for a small model)."""
    vllm_config = prepare_engine(config)
    args = engine_args(config, vllm_config.lora_config.max_loras)
    prestart.install()
    try:
        return AsyncLLM.from_vllm_config(vllm_config,
                                         usage_context=UsageContext.OPENAI_API_SERVER,
                                         stat_loggers=[engine_metrics.PrometheusStatLogger],
                                         # Read by vLLM's own entry point, not by its config.
                                         enable_log_requests=args.enable_log_requests,
                                         aggregate_engine_logging=args.aggregate_engine_logging)
    finally:
        prestart.release()  # unless the engine core runs in it
