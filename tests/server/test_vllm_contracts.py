"""One contract per entry of server/vllm_patches.py: the vLLM (torch, xgrammar) symbol still has
the shape the patch relies on. A failure names the entry, the symbol and the file that patches
it. Imports only, no engine: run these first after changing vLLM's version.

Checks look through the server's own patches (`server.vllm_patches.theirs`): in a process where
the plugin has already run, the original is checked, not ours. Some contracts also check the
reason a patch exists (vLLM's code still does what the patch works around) and say so when it
no longer does: the patch may then be obsolete.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from server.vllm_patches import PATCHES, theirs

ROOT = Path(__file__).parents[2]
CONTRACTS: dict[str, Callable[[], None]] = {}


class Broken(Exception):
    """The symbol no longer has the shape the patch relies on."""


def contract(patch_id: str):
    def register(fn: Callable[[], None]) -> Callable[[], None]:
        CONTRACTS[patch_id] = fn
        return fn
    return register


def require(condition: object, message: str) -> None:
    if not condition:
        raise Broken(message)


def params(fn) -> list[str]:
    return list(inspect.signature(fn).parameters)


def require_params(fn, *names: str, exactly: bool = False) -> None:
    found = params(fn)
    missing = [n for n in names if n not in found]
    require(not missing, f"{fn.__qualname__} has no parameter {', '.join(missing)} (its parameters: {found})")
    if exactly:
        require(found == list(names), f"{fn.__qualname__} takes {found}, the patch expects {list(names)}")


def has_member(cls: type, name: str) -> bool:
    """An attribute, dataclass or pydantic field, annotation, or `self.name` assigned in the
    source of the class or one of its bases."""
    if hasattr(cls, name):
        return True
    for klass in inspect.getmro(cls):
        fields = {**getattr(klass, "__dataclass_fields__", {}), **(getattr(klass, "model_fields", None) or {})}
        if name in fields or name in vars(klass).get("__annotations__", {}):
            return True
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        if re.search(rf"self\.{re.escape(name)}\s*(:[^=\n]*)?=", source):
            return True
    return False


def require_members(cls: type, *names: str) -> None:
    missing = [n for n in names if not has_member(cls, n)]
    require(not missing, f"{cls.__qualname__} has no {', '.join(missing)}")


def source(obj) -> str:
    return inspect.getsource(obj)


def accepts(base_fn, our_fn) -> list[str]:
    """Why a call vLLM makes as `base_fn`'s signature allows would not bind to `our_fn`, or
    would pass a required argument ours does not name (it would only reach vLLM's method
    through **kwargs on some paths)."""
    base, ours = inspect.signature(base_fn), inspect.signature(our_fn)
    kinds = inspect.Parameter
    ours_params = list(ours.parameters.values())
    var_positional = any(p.kind == kinds.VAR_POSITIONAL for p in ours_params)
    var_keyword = any(p.kind == kinds.VAR_KEYWORD for p in ours_params)
    ours_positional = [p for p in ours_params if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)]
    problems = []
    for i, p in enumerate(base.parameters.values()):
        if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD):
            if i < len(ours_positional):
                if p.kind == kinds.POSITIONAL_OR_KEYWORD and ours_positional[i].name != p.name \
                        and p.name not in ours.parameters and not var_keyword:
                    problems.append(f"`{p.name}` passed by keyword is not accepted")
            elif not var_positional and not (p.name in ours.parameters or var_keyword):
                problems.append(f"`{p.name}` is not accepted")
        elif p.kind == kinds.KEYWORD_ONLY:
            if p.name not in ours.parameters and not var_keyword:
                problems.append(f"keyword `{p.name}` is not accepted")
        elif p.kind == kinds.VAR_POSITIONAL and not var_positional:
            problems.append("extra positional arguments are not accepted")
        elif p.kind == kinds.VAR_KEYWORD and not var_keyword:
            problems.append("extra keyword arguments are not accepted")
        if p.default is p.empty and p.kind not in (kinds.VAR_POSITIONAL, kinds.VAR_KEYWORD) \
                and p.name not in ours.parameters:
            problems.append(f"vLLM's method requires `{p.name}`, which ours does not name")
    for p in ours_params:
        if p.default is p.empty and p.kind not in (kinds.VAR_POSITIONAL, kinds.VAR_KEYWORD) \
                and p.name not in base.parameters:
            problems.append(f"ours requires `{p.name}`, which vLLM does not pass")
    return problems


def require_overrides(ours: type, base: type, overridden: tuple[str, ...], forwarded: tuple[str, ...] = ()) -> None:
    """Each method our subclass overrides exists on the base, as the same kind of attribute, and
    every call the base's signature allows binds to ours (`forwarded`: ours passes everything on
    unchanged, `*args, **kwargs`: it only has to exist); and every method of ours that the base
    also has is listed (so a new override is checked too)."""
    own = {name for name, value in vars(ours).items()
           if inspect.isfunction(value) or isinstance(value, (property, classmethod, staticmethod))}
    unlisted = sorted(n for n in own - set(overridden) - set(forwarded) if hasattr(base, n))
    require(not unlisted, f"{ours.__qualname__} also overrides {unlisted}: list them in its contract")
    for name in (*overridden, *forwarded):
        require(hasattr(base, name), f"{base.__qualname__}.{name} is gone (overridden by {ours.__qualname__})")
        if name in forwarded:
            continue
        mine, theirs_ = inspect.getattr_static(ours, name), inspect.getattr_static(base, name)
        if isinstance(mine, property):
            require(isinstance(theirs_, property), f"{base.__qualname__}.{name} is no longer a property")
            continue
        problems = accepts(theirs(base, name), theirs(ours, name))
        require(not problems, f"{base.__qualname__}.{name}: {'; '.join(problems)}")


# ---- CPU LoRA ----------------------------------------------------------------------------------

@contract("cpu-punica-wrapper")
def _():
    from vllm.lora.punica_wrapper import punica_selector
    from vllm.platforms.cpu import CpuPlatform

    require(isinstance(inspect.getattr_static(CpuPlatform, "get_punica_wrapper"), classmethod),
            "CpuPlatform.get_punica_wrapper is no longer a classmethod")
    original = theirs(CpuPlatform, "get_punica_wrapper")
    require_params(original, "cls", exactly=True)
    require(isinstance(original(CpuPlatform), str), "get_punica_wrapper no longer returns a qualified name")
    text = source(punica_selector.get_punica_wrapper)
    require("current_platform.get_punica_wrapper()" in text and "resolve_obj_by_qualname" in text,
            "vLLM no longer resolves the punica wrapper by the platform's qualified name")


@contract("cpu-compile-with-lora")
def _():
    from vllm.config import LoRAConfig, VllmConfig
    from vllm.platforms.cpu import CpuPlatform

    require(isinstance(inspect.getattr_static(CpuPlatform, "check_and_update_config"), classmethod),
            "CpuPlatform.check_and_update_config is no longer a classmethod")
    original = theirs(CpuPlatform, "check_and_update_config")
    require_params(original, "cls", "vllm_config", exactly=True)
    require_members(VllmConfig, "lora_config", "compilation_config")
    require_members(LoRAConfig, "fully_sharded_loras")
    text = source(original)
    require(re.search(r"lora_config is not None:\s*\n\s*compilation_config\.mode = CompilationMode\.NONE", text),
            "vLLM's CPU platform no longer turns compilation off for LoRA: the patch may be obsolete")


@contract("prompt-logprobs-lora-rows")
def _():
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner

    original = theirs(GPUModelRunner, "_get_prompt_logprobs_dict")
    require(original is not None, "GPUModelRunner._get_prompt_logprobs_dict is gone")
    require_params(original, "self", "hidden_states", "num_scheduled_tokens", exactly=True)
    text = source(original)
    require(re.search(r"(\w+) = hidden_states\[offset : offset \+ num_logits\]", text)
            and "self.model.compute_logits(prompt_hidden_states)" in text,
            "vLLM no longer computes prompt logits on a slice (view) of the step's hidden states")


@contract("punica-cpu-subclass")
def _():
    from vllm.lora.punica_wrapper.punica_cpu import PunicaWrapperCPU

    from server.in_engine.lora_ops.punica import GroupedPunicaWrapperCPU

    require_overrides(GroupedPunicaWrapperCPU, PunicaWrapperCPU,
                      ("update_metadata", "add_lora_linear", "add_lora_logits", "add_shrink", "add_expand"),
                      forwarded=("__init__",))
    require_members(PunicaWrapperCPU, "token_lora_indices", "sampler_indices")


@contract("lora-custom-op")
def _():
    from vllm.utils.torch_utils import direct_register_custom_op

    require_params(direct_register_custom_op, "op_name", "op_func", "mutates_args", "fake_impl",
                   "target_lib", "dispatch_key")


@contract("tensor-version-counter")
def _():
    import torch

    tensor = torch.zeros(2)
    before = tensor._version
    tensor.add_(1)
    require(isinstance(before, int) and tensor._version > before,
            "an in-place write no longer increases Tensor._version")
    tensor._adapter_serve_lora_cache = {}  # a Python attribute on a tensor (the cache's home)


@contract("lora-residency-slots")
def _():
    from vllm.lora.model_manager import LoRAModelManager
    from vllm.lora.worker_manager import LRUCacheWorkerLoRAManager, WorkerLoRAManager

    require(has_member(WorkerLoRAManager, "_adapter_manager"),
            "WorkerLoRAManager no longer keeps its model manager as `_adapter_manager`")
    require(callable(getattr(LRUCacheWorkerLoRAManager, "list_adapters", None)),
            "LRUCacheWorkerLoRAManager.list_adapters is gone")
    require(has_member(LoRAModelManager, "lora_index_to_id"),
            "LoRAModelManager no longer keeps its slot table `lora_index_to_id`")


@contract("lora-slot-writes")
def _():
    from vllm.lora.layers.base_linear import BaseLinearLayerWithLoRA
    from vllm.lora.model_manager import LoRAModelManager

    original = theirs(LoRAModelManager, "activate_adapter")
    require(original is not None, "LoRAModelManager.activate_adapter is gone")
    require_params(original, "self", "lora_id", exactly=True)
    text = source(original)
    require("lora_index_to_id[index]" in text and "set_lora(" in text and "reset_lora(" in text,
            "activate_adapter no longer writes the slot it records in lora_index_to_id through "
            "set_lora / reset_lora")
    for name in ("lora_a_stacked", "lora_b_stacked"):
        require(has_member(BaseLinearLayerWithLoRA, name), f"LoRA layers no longer keep `{name}`")


# ---- Embeddings, int8 bases ------------------------------------------------------------------

@contract("no-lora-on-embeddings")
def _():
    from vllm.lora import utils as lora_utils
    from vllm.lora.layers.vocab_parallel_embedding import VocabParallelEmbeddingWithLoRA

    require(isinstance(inspect.getattr_static(VocabParallelEmbeddingWithLoRA, "can_replace_layer"), classmethod),
            "can_replace_layer is no longer a classmethod")
    require_params(theirs(VocabParallelEmbeddingWithLoRA, "can_replace_layer"),
                   "source_layer", "lora_config", "packed_modules_list", "model_config")
    require(".can_replace_layer(" in source(lora_utils),
            "vLLM no longer picks LoRA layer classes with can_replace_layer")


@contract("lora-device-prepacked")
def _():
    from vllm.lora.layers import base_linear, utils  # noqa: F401 (imports every LoRA layer module)

    original = theirs(utils, "_get_lora_device")
    require_params(original, "base_layer", exactly=True)
    require(theirs(base_linear, "_get_lora_device") is original,
            "base_linear no longer imports _get_lora_device from utils by name")
    importers = {name for name, module in list(sys.modules.items())
                 if name.startswith("vllm.lora.") and "_get_lora_device" in vars(module)}
    known = {"vllm.lora.layers.utils", "vllm.lora.layers.base_linear", "vllm.lora.layers.fused_moe"}
    require(importers <= known, f"{sorted(importers - known)} also import _get_lora_device by name: "
            "patch them too (server/in_engine/quantized_bases.py)")
    require("base_layer.weight.device" in source(original),
            "vLLM's _get_lora_device no longer reads base_layer.weight: the patch may be obsolete")


@contract("vnni-probe")
def _():
    import torch

    probe = getattr(torch.cpu, "_is_vnni_supported", None)
    require(callable(probe), "torch.cpu._is_vnni_supported is gone")
    require(isinstance(probe(), bool), "torch.cpu._is_vnni_supported() no longer returns a bool")


# ---- xgrammar ----------------------------------------------------------------------------------

@contract("xgrammar-json-schema")
def _():
    import xgrammar
    from vllm.v1.structured_output import backend_xgrammar

    require_params(theirs(xgrammar.GrammarCompiler, "compile_json_schema"),
                   "schema", "any_whitespace", "separators", "max_whitespace_cnt")
    require("compile_json_schema(" in source(backend_xgrammar),
            "vLLM's xgrammar backend no longer calls compile_json_schema")


@contract("xgrammar-structural-tag")
def _():
    import xgrammar
    from vllm.v1.structured_output import backend_xgrammar

    require(callable(theirs(xgrammar.GrammarCompiler, "compile_structural_tag")),
            "GrammarCompiler.compile_structural_tag is gone")
    require("compile_structural_tag(grammar_spec)" in source(backend_xgrammar),
            "vLLM's xgrammar backend no longer passes the structural tag as one JSON string")


# ---- Start-up ------------------------------------------------------------------------------------

@contract("engine-core-mp-context")
def _():
    from vllm.config import ParallelConfig
    from vllm.v1.engine import utils

    require_params(theirs(utils, "get_mp_context"), exactly=True)
    text = source(utils.CoreEngineProcManager.__init__)
    for needle in ("get_mp_context()", "context.Process(", "target=", "name=", "kwargs=", '"vllm_config"'):
        require(needle in text, f"CoreEngineProcManager no longer creates the engine core as the "
                f"prestart expects (no `{needle}`)")
    require_members(ParallelConfig, "numa_bind")


@contract("prestart-environment")
def _():
    from vllm.platforms.cpu import CpuPlatform

    text = source(theirs(CpuPlatform, "check_and_update_config"))
    for needle in ("TORCHINDUCTOR_COMPILE_THREADS", "LD_PRELOAD", "libtcmalloc", "libgomp", "torch.libs"):
        require(needle in text, f"CpuPlatform.check_and_update_config no longer mentions {needle}: "
                "re-check server/startup/prestart.py's prediction of vLLM's process environment")


@contract("prestart-cpu-detection")
def _():
    from vllm import platforms

    text = source(platforms.cpu_platform_plugin)
    require("VLLM_TARGET_DEVICE" in text and '"cpu"' in text,
            "vLLM's cpu_platform_plugin decides otherwise: re-check prestart.vllm_spawns_engine_core")


@contract("prestart-preloaded-modules")
def _():
    from server.startup import prestart

    missing = [m for m in prestart.PRELOAD if m.startswith("vllm.") and importlib.util.find_spec(m) is None]
    require(not missing, f"vLLM modules the prestart imports ahead are gone: {missing}")


@contract("model-info-in-process")
def _():
    from vllm.model_executor.models import registry

    require_params(theirs(registry, "_run_in_subprocess"), "fn", exactly=True)
    require(source(registry).count("_run_in_subprocess(") >= 2,
            "vLLM no longer calls _run_in_subprocess by its module-level name")


@contract("compile-cache-on-cpu")
def _():
    from torch._dynamo.aot_compile_types import BundledAOTAutogradSerializableCallable
    from vllm.compilation import decorators

    require(inspect.isclass(BundledAOTAutogradSerializableCallable), "torch's class is gone")
    require(".finalize_loading(" in source(decorators),
            "vLLM's AOT cache loader no longer calls finalize_loading: the patch may be obsolete")


@contract("executor-phases-timed")
def _():
    from vllm.v1.executor.abstract import Executor

    from server.in_engine import engine_phases

    require(callable(theirs(Executor, "__init__")), "Executor.__init__ is gone")
    missing = [m for m in engine_phases.EXECUTOR_PHASES if not callable(getattr(Executor, m, None))]
    require(not missing, f"Executor has no {missing}")


@contract("worker-load-timed")
def _():
    from vllm.v1.worker.cpu_worker import CPUWorker
    from vllm.v1.worker.worker_base import WorkerWrapperBase

    original = theirs(WorkerWrapperBase, "init_worker")
    require_params(original, "self", "all_kwargs", exactly=True)
    require("self.worker = " in source(original), "init_worker no longer sets self.worker")
    require(callable(getattr(CPUWorker, "load_model", None)), "CPUWorker.load_model is gone")


@contract("vllm-plugin-entry-point")
def _():
    from vllm import plugins

    require(plugins.DEFAULT_PLUGINS_GROUP == "vllm.general_plugins",
            f"vLLM's plugin group is now {plugins.DEFAULT_PLUGINS_GROUP!r}")
    require(callable(plugins.load_general_plugins), "vllm.plugins.load_general_plugins is gone")
    entry = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["vllm.general_plugins"]
    module, _, function = entry["adapter_serve"].partition(":")
    require(callable(getattr(importlib.import_module(module), function)), f"{entry} does not load")


# ---- API process: engine configuration -----------------------------------------------------------

@contract("vllm-config-mutated")
def _():
    from vllm.config import ParallelConfig, SchedulerConfig, VllmConfig
    from vllm.platforms.cpu import CpuPlatform

    require_members(VllmConfig, "scheduler_config", "parallel_config")
    require_members(SchedulerConfig, "max_num_queued_reqs", "max_num_queued_tokens", "max_num_seqs")
    require_members(ParallelConfig, "distributed_executor_backend", "world_size")
    text = source(theirs(CpuPlatform, "check_and_update_config"))
    require('distributed_executor_backend = "mp"' in text,
            "vLLM's CPU platform no longer turns `uni` into `mp`: set `uni` as an engine argument instead")


@contract("worker-in-engine-core")
def _():
    from vllm.utils.ompmultiprocessing import OMPProcessManager

    init = inspect.signature(OMPProcessManager.__init__)
    required = [p for p in list(init.parameters.values())[1:] if p.default is p.empty]
    require(len(required) == 1, f"OMPProcessManager takes {list(init.parameters)}, not one VllmConfig")
    require_members(OMPProcessManager, "skip_setup", "cpu_lists", "reserved_cpu_list")


@contract("numa-split")
def _():
    from vllm import envs
    from vllm.utils import cpu_resource_utils, ompmultiprocessing

    require("VLLM_CPU_SIM_MULTI_NUMA" in source(ompmultiprocessing.OMPProcessManager),
            "vLLM no longer reads VLLM_CPU_SIM_MULTI_NUMA")
    require("VLLM_CPU_OMP_THREADS_BIND" in envs.environment_variables,
            "vLLM no longer reads VLLM_CPU_OMP_THREADS_BIND")
    signature = inspect.signature(cpu_resource_utils.get_visible_memory_node)
    require(all(p.default is not p.empty for p in signature.parameters.values()),
            "get_visible_memory_node now requires arguments")


@contract("pipeline-eager-refused")
def _():
    from vllm.config import CompilationConfig, CompilationMode
    from vllm.v1.worker.cpu_model_runner import CPUModelRunner

    require(hasattr(CompilationMode, "NONE"), "CompilationMode.NONE is gone")
    require_members(CompilationConfig, "mode")
    require(re.search(r"mode == CompilationMode\.NONE:\s*\n\s*return", source(CPUModelRunner.warming_up_model)),
            "vLLM's CPU runner no longer skips its warm-up without compilation: the refusal may be obsolete")


@contract("onednn-primitive-cache")
def _():
    import torch

    import mmap

    require(torch.backends.mkldnn.is_available(), "this torch has no oneDNN: the variables do nothing")
    # ideep's variable is documented only in torch's source: it must still be in the library.
    library = Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"
    with library.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        require(data.find(b"LRU_CACHE_CAPACITY\0") >= 0,
                "libtorch_cpu no longer reads LRU_CACHE_CAPACITY: ideep's cache is unbounded again")


# ---- API process: metrics, parsers, validation ---------------------------------------------------

@contract("lora-gauge-replaced")
def _():
    from vllm.v1.engine.async_llm import AsyncLLM
    from vllm.v1.metrics import loggers
    from vllm.v1.metrics.stats import SchedulerStats

    from server.engine_metrics import PrometheusStatLogger

    require_overrides(PrometheusStatLogger, loggers.PrometheusStatLogger, ("__init__", "record"))
    require_members(loggers.PrometheusStatLogger, "gauge_lora_info")
    require_members(SchedulerStats, "running_lora_adapters", "waiting_lora_adapters")
    require_params(AsyncLLM.from_vllm_config, "stat_loggers")
    require("if self.gauge_lora_info is not None" in source(loggers.PrometheusStatLogger.record),
            "vLLM's record() no longer skips a None gauge_lora_info")


@contract("engine-args-parser")
def _():
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = AsyncEngineArgs.add_cli_args(FlexibleArgumentParser())
    actions = getattr(parser, "_actions", None)
    require(isinstance(actions, list) and actions, "vLLM's parser has no argparse `_actions`")
    require(all(hasattr(a, "dest") and hasattr(a, "option_strings") for a in actions),
            "vLLM's parser actions lack dest/option_strings")


@contract("forced-tool-calls-parser")
def _():
    from vllm.parser import ParserManager
    from vllm.parser.abstract_parser import DelegatingParser
    from vllm.tool_parsers import ToolParser

    require_members(DelegatingParser, "tool_parser_cls")
    require(inspect.isclass(ToolParser), "vllm.tool_parsers.ToolParser is gone")
    require_params(theirs(ParserManager, "get_parser"), "tool_parser_name", "enable_auto_tools", "tokenizer",
                   "model_name", "tool_strict_level")


@contract("structured-output-verify")
def _():
    from vllm.sampling_params import SamplingParams

    require_params(SamplingParams.verify, "self", "model_config", "speculative_config",
                   "structured_outputs_config", "tokenizer", exactly=True)


# ---- Soft prompts: the KV connector --------------------------------------------------------------

@contract("kv-connector-subclass")
def _():
    from vllm.distributed.kv_transfer.kv_connector.v1.base import KVConnectorBase_V1, KVConnectorMetadata
    from vllm.v1.metrics.cache_hit_source import CacheHitSource

    from server.in_engine.soft_prompt_cache.connector import SoftPromptKVConnector

    require_overrides(SoftPromptKVConnector, KVConnectorBase_V1,
                      ("__init__", "requires_kv_delivery", "on_new_request", "get_num_new_matched_tokens",
                       "update_state_after_alloc", "build_connector_meta", "request_finished",
                       "register_kv_caches", "start_load_kv", "wait_for_layer_load", "save_kv_layer",
                       "wait_for_save", "get_block_ids_with_load_errors"))
    require(callable(getattr(KVConnectorBase_V1, "_get_connector_metadata", None)),
            "KVConnectorBase_V1._get_connector_metadata is gone")
    require("_cache_hit_source" in vars(KVConnectorBase_V1), "KVConnectorBase_V1._cache_hit_source is gone")
    require("self._kv_transfer_config = " in source(KVConnectorBase_V1.__init__),
            "KVConnectorBase_V1 no longer sets self._kv_transfer_config")
    require(inspect.isclass(KVConnectorMetadata) and hasattr(CacheHitSource, "DEVICE"),
            "KVConnectorMetadata or CacheHitSource.DEVICE is gone")


@contract("kv-connector-scheduler-objects")
def _():
    from vllm.lora.request import LoRARequest
    from vllm.v1.core.sched.output import CachedRequestData, NewRequestData, SchedulerOutput
    from vllm.v1.kv_cache_interface import KVCacheConfig, KVCacheGroupSpec, KVCacheSpec
    from vllm.v1.request import Request

    require_members(Request, "prompt_embeds", "prompt_is_token_ids", "num_prompt_tokens", "lora_request",
                    "request_id")
    require_members(LoRARequest, "lora_int_id")
    require_members(NewRequestData, "req_id", "block_ids", "num_computed_tokens")
    require_members(CachedRequestData, "req_ids", "resumed_req_ids", "new_block_ids", "num_computed_tokens")
    require_members(SchedulerOutput, "scheduled_new_reqs", "scheduled_cached_reqs", "num_scheduled_tokens")
    require_members(KVCacheConfig, "kv_cache_groups", "num_blocks")
    require_members(KVCacheGroupSpec, "kv_cache_spec", "layer_names")
    require_members(KVCacheSpec, "block_size", "page_size_bytes")


@pytest.mark.parametrize("patch", PATCHES, ids=lambda p: p.id)
def test_contract(patch):
    check = CONTRACTS.get(patch.id)
    assert check is not None, f"no contract for inventory entry {patch.id}"
    try:
        check()
    except Broken as exc:
        reason = str(exc)
    except (ImportError, AttributeError, TypeError, ValueError, OSError, KeyError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
    else:
        return
    pytest.fail(f"vLLM patch `{patch.id}` ({', '.join(patch.files)}) relies on {patch.symbol}: {reason}. "
                f"See docs/vllm-patches.md#{patch.id}", pytrace=False)
