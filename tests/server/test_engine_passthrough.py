"""--engine-arg KEY=VALUE: keys checked against vLLM's AsyncEngineArgs, values typed as vLLM types
them, and what a server flag sets refused with the flag to use."""

from __future__ import annotations

import pytest
from vllm.config import CompilationConfig, CompilationMode

from server.engine_passthrough import EngineArgError, parse


def refused(*pairs: str) -> str:
    with pytest.raises(EngineArgError) as exc:
        parse(pairs)
    return str(exc.value)


def test_values_take_the_type_vllm_serve_gives_them():
    # Dashes as in `vllm serve` flags, or underscores as in the field names.
    assert parse(["quantization=awq", "max-parallel-loading-workers=2"]) == \
        {"quantization": "awq", "max_parallel_loading_workers": 2}
    assert parse(["cpu_offload_gb=1.5", "max_num_scheduled_tokens=8k"]) == \
        {"cpu_offload_gb": 1.5, "max_num_scheduled_tokens": 8000}
    assert parse(["enforce-eager=true", "disable_custom_all_reduce=off"]) == \
        {"enforce_eager": True, "disable_custom_all_reduce": False}
    assert parse(['hf-overrides={"rope_theta": 1e6}', "quantization=None"]) == \
        {"hf_overrides": {"rope_theta": 1e6}, "quantization": None}
    assert parse(["cudagraph_capture_sizes=[1, 2, 4]"]) == \
        parse(["cudagraph_capture_sizes=1,2,4"]) == {"cudagraph_capture_sizes": [1, 2, 4]}
    config = parse(['compilation_config={"mode": 0}'])["compilation_config"]
    assert isinstance(config, CompilationConfig) and config.mode == CompilationMode.NONE
    assert parse([]) == {}


def test_unknown_keys_name_close_matches():
    message = refused("quantisation=awq")
    assert "quantisation" in message and "did you mean quantization" in message
    assert "AsyncEngineArgs" in refused("no_such_thing_at_all=1")
    assert "not a vLLM engine argument" in refused("_api_process_count=2")  # vLLM's plumbing


def test_what_a_server_flag_sets_is_refused_with_the_flag():
    assert "use --max-loras instead" in refused("max_loras=4")
    assert "use --max-model-len instead" in refused("max-model-len=4096")
    assert "use --kv-cache-gib instead" in refused("kv_cache_memory_bytes=1000")
    assert "use --tensor-parallel-size instead" in refused("tensor_parallel_size=2")
    assert "use --data-parallel-size instead" in refused("data_parallel_size=2")
    assert "fixed by the server" in refused("enable_lora=false")
    assert "fixed by the server" in refused("disable_log_stats=true")


@pytest.mark.parametrize("pair, expected", [
    ("quantization", "expected KEY=VALUE"),
    ("=awq", "expected KEY=VALUE"),
    ("enforce_eager=maybe", "expected true or false"),
    ("max_parallel_loading_workers=many", "expected int | None"),
    ("kv_cache_dtype=fp9", "expected one of auto"),
    ("override_generation_config={oops", "expected dict"),
    ("cudagraph_capture_sizes=[1, ", "cudagraph_capture_sizes=[1, :"),  # malformed JSON list
    ('compilation_config={"mode": "fast"}', "Invalid compilation mode"),
])
def test_bad_values_say_what_was_expected(pair, expected):
    message = refused(pair)
    assert message.startswith("--engine-arg ") and expected in message


def test_a_key_given_twice_is_refused():
    assert "given twice" in refused("enforce_eager=true", "enforce-eager=false")
