from __future__ import annotations

import pytest

from adapter_formats.cli_args import attribute_docs, parse_dataclass
from server.config import ServerConfig


def test_every_config_field_has_help_text():
    docs = attribute_docs(ServerConfig)
    missing = [f for f in ServerConfig.__dataclass_fields__ if not docs.get(f)]
    assert missing == []


def test_flags_parse_into_typed_config():
    c = parse_dataclass(ServerConfig, ["--model", "m", "--port", "9", "--api-key", "a", "b",
                                       "--no-enable-soft-prompts", "--dtype", "float32",
                                       "--max-model-len", "64"])
    assert (c.model, c.port, c.api_key, c.enable_soft_prompts, c.dtype, c.max_model_len) == \
        ("m", 9, ["a", "b"], False, "float32", 64)
    assert c.max_cpu_loras is None and c.trust_remote_code is False


def test_help_shows_field_docs(capsys):
    with pytest.raises(SystemExit):
        parse_dataclass(ServerConfig, ["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "Run Python code shipped inside the model directory" in out


def test_bad_flag_values_are_refused():
    with pytest.raises(SystemExit):
        parse_dataclass(ServerConfig, ["--model", "m", "--dtype", "int3"])
    with pytest.raises(SystemExit):
        parse_dataclass(ServerConfig, [])  # --model is required


def test_list_flags_repeat_and_accumulate():
    c = parse_dataclass(ServerConfig, ["--model", "m", "--engine-arg", "quantization=awq",
                                       "--engine-arg", "enforce-eager=true", "--api-key", "a",
                                       "--api-key", "b", "c"])
    assert c.engine_arg == ["quantization=awq", "enforce-eager=true"]
    assert c.api_key == ["a", "b", "c"]
    assert parse_dataclass(ServerConfig, ["--model", "m"]).engine_arg == []


def test_parallelism_and_batching_flags():
    c = parse_dataclass(ServerConfig, ["--model", "m", "--pipeline-parallel-size", "2",
                                       "--data-parallel-size", "3",
                                       "--distributed-executor-backend", "ray",
                                       "--max-num-batched-tokens", "2048",
                                       "--no-enable-prefix-caching"])
    assert (c.pipeline_parallel_size, c.data_parallel_size, c.distributed_executor_backend,
            c.max_num_batched_tokens, c.enable_prefix_caching) == (2, 3, "ray", 2048, False)
    assert parse_dataclass(ServerConfig, ["--model", "m"]).enable_prefix_caching is None  # vLLM's
    with pytest.raises(SystemExit):
        parse_dataclass(ServerConfig, ["--model", "m", "--distributed-executor-backend", "mpi"])


def test_help_explains_engine_args(capsys):
    with pytest.raises(SystemExit):
        parse_dataclass(ServerConfig, ["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--engine-arg" in out and "KEY=VALUE" in out and "AsyncEngineArgs" in out


def test_pinned_adapters_take_commas_spaces_and_repeats():
    c = parse_dataclass(ServerConfig, ["--model", "m", "--pin-adapters", "a,b", "c", "--pin-adapters", "b,,d"])
    assert c.pinned_adapters == ["a", "b", "c", "d"]
