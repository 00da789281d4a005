"""`--engine-arg KEY=VALUE`: every vLLM engine argument, without a server flag of its own.

    python -m server --model M --engine-arg quantization=awq --engine-arg enforce-eager=true \
        --engine-arg 'compilation-config={"mode": 0}'

KEY is a field of vLLM's `AsyncEngineArgs` (the `vllm serve` flag without its dashes; `-` and `_`
alike). VALUE is read with the type `vllm serve` gives that flag (its own argparse types, so `8k`
token counts and JSON config objects work the same), plus `true`/`false` for switches and a JSON
list or `a,b,c` for lists. An argument a server flag sets (SERVER_FLAGS) is refused with the flag
to use instead, so the server's flags always win and nothing is set in two places.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import json
import types
import typing
from collections.abc import Iterable
from typing import Any

from vllm.engine.arg_utils import AsyncEngineArgs

# Engine argument -> the server flag that sets it (server/engine.py passes them on).
SERVER_FLAGS: dict[str, str] = {
    "model": "--model",
    "tokenizer": "--model",
    "served_model_name": "--served-model-name",
    "runner": "--runner",
    "convert": "--convert",
    "dtype": "--dtype",
    "seed": "--seed",
    "max_model_len": "--max-model-len",
    "tensor_parallel_size": "--tensor-parallel-size",
    "pipeline_parallel_size": "--pipeline-parallel-size",
    "data_parallel_size": "--data-parallel-size",
    "distributed_executor_backend": "--distributed-executor-backend",
    "gpu_memory_utilization": "--gpu-memory-utilization",
    "kv_cache_memory_bytes": "--kv-cache-gib",
    "max_num_seqs": "--max-num-seqs",
    "max_num_batched_tokens": "--max-num-batched-tokens",
    "enable_prefix_caching": "--enable-prefix-caching / --no-enable-prefix-caching",
    "block_size": "--block-size",
    "max_logprobs": "--max-logprobs",
    "trust_remote_code": "--trust-remote-code",
    "max_loras": "--max-loras",
    "max_lora_rank": "--max-lora-rank",
    "max_cpu_loras": "--max-cpu-loras",
    "enable_prompt_embeds": "--enable-soft-prompts",
    "kv_transfer_config": "--soft-prompt-kv-cache-mib (the soft-prompt cache is a KV connector)",
    "structured_outputs_config": "--structured-outputs-backend",
    "max_num_queued_reqs": "--max-queued-requests",
    "max_num_queued_tokens": "--max-queued-tokens",
    "shutdown_timeout": "--shutdown-timeout (the server drains requests itself)",
}

# Engine arguments the server cannot work without, with the reason.
FIXED: dict[str, str] = {
    "enable_lora": "always on: every LoRA adapter is served through it",
    "disable_log_stats": "the engine's statistics feed /metrics, including the "
                         "vllm:lora_requests_info gauge a gateway routes by",
    "worker_extension_cls": "the server's own (server.in_engine.lora_residency): where each "
                            "LoRA is held, for vllm:lora_adapter_loaded",
}

_SWITCH_WORDS = {"true": True, "1": True, "yes": True, "on": True,
                 "false": False, "0": False, "no": False, "off": False}


class EngineArgError(ValueError):
    """A --engine-arg the server refuses; the message says what to write instead."""


def parse(pairs: Iterable[str]) -> dict[str, Any]:
    """`["KEY=VALUE", ...]` -> `AsyncEngineArgs` keyword arguments, typed; EngineArgError if not."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        name = key.strip().replace("-", "_")
        if not sep or not name:
            raise EngineArgError(f"--engine-arg {pair!r}: expected KEY=VALUE, e.g. "
                                 "--engine-arg quantization=awq")
        _check_key(name)
        if name in out:
            raise EngineArgError(f"--engine-arg {name} is given twice")
        out[name] = _convert(name, raw)
    return out


@functools.cache
def _fields() -> dict[str, dataclasses.Field]:
    # Underscored fields are vLLM's internal plumbing between its own processes.
    return {f.name: f for f in dataclasses.fields(AsyncEngineArgs) if not f.name.startswith("_")}


def _check_key(name: str) -> None:
    if name in SERVER_FLAGS:
        raise EngineArgError(f"--engine-arg {name}: the server sets it; use "
                             f"{SERVER_FLAGS[name]} instead")
    if name in FIXED:
        raise EngineArgError(f"--engine-arg {name}: fixed by the server ({FIXED[name]})")
    if name not in _fields():
        close = difflib.get_close_matches(name, list(_fields()), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise EngineArgError(f"--engine-arg {name}: not a vLLM engine argument (a field of "
                             f"vllm.engine.arg_utils.AsyncEngineArgs){hint}")


@functools.cache
def _vllm_flags() -> dict[str, argparse.Action]:
    """vLLM's own `vllm serve` flags, by field: their types read the values."""
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = AsyncEngineArgs.add_cli_args(FlexibleArgumentParser())
    return {a.dest: a for a in parser._actions if a.option_strings}


def _convert(name: str, raw: str) -> Any:
    action = _vllm_flags().get(name)
    try:
        if action is None:  # the few fields `vllm serve` has no flag for
            return _from_type_hint(name, raw)
        if action.nargs == 0:  # --x / --no-x switches
            return _switch(raw)
        if action.nargs == "?":  # optional-valued flags: bare means `const`
            return action.const if raw.strip().lower() in ("", "true") else _one(action, raw)
        if action.nargs in ("+", "*"):
            return [_one(action, item) for item in _items(raw)]
        return _one(action, raw)
    except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
        detail = str(exc)
        if "cannot be converted to" in detail:  # vLLM's generic message names a function
            detail = f"expected {_type_text(_fields()[name].type)}"
        raise EngineArgError(f"--engine-arg {name}={raw}: {detail}") from None


def _one(action: argparse.Action, raw: str) -> Any:
    value = action.type(raw) if callable(action.type) else raw
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(str(c) for c in action.choices if c is not None)
        raise ValueError(f"expected one of {choices}")
    return value


def _switch(raw: str) -> bool:
    try:
        return _SWITCH_WORDS[raw.strip().lower()]
    except KeyError:
        raise ValueError("expected true or false") from None


def _items(raw: str) -> list[str]:
    if raw.strip().startswith("["):  # vLLM's item type reads each one: back to text first
        return [i if isinstance(i, str) else json.dumps(i) for i in json.loads(raw)]
    return [item.strip() for item in raw.split(",") if item.strip()]


def _from_type_hint(name: str, raw: str) -> Any:
    hint = _fields()[name].type
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    if hint is bool or (union and bool in typing.get_args(hint)):
        return _switch(raw)
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _type_text(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
