"""Stock vLLM's contender: command line flags and the timed load of cold adapters (no server)."""

from __future__ import annotations

import pytest

from loadtests.bench.assets import BenchAssets
from loadtests.bench.load import Prelude
from loadtests.bench.stock_vllm import DEFAULT_MAX_LORAS, StockVLLM, StockVLLMNoLoRA
from loadtests.bench.workloads import Target, supported
from tests.loadtests.bench.test_contender import _fake_adapter


def test_command_has_the_max_loras_values(tmp_path):
    cmd = StockVLLM(BenchAssets(tmp_path), "float32", 4).command(8000)
    assert cmd[cmd.index("--max-loras") + 1] == "4" and cmd[cmd.index("--max-cpu-loras") + 1] == "4"
    cmd = StockVLLM(BenchAssets(tmp_path), "float32", 4, 48).command(8000)
    assert cmd[cmd.index("--max-cpu-loras") + 1] == "48"
    assert "--max-loras" not in StockVLLMNoLoRA(BenchAssets(tmp_path), "float32", 4).command(8000)
    assert set(StockVLLMNoLoRA.workloads) == {"base"}


def test_server_defaults_give_stock_vllm_8_and_8(tmp_path):
    """--max-loras default: stock vLLM sizes nothing from memory (its own default is 1 slot)."""
    cmd = StockVLLM(BenchAssets(tmp_path), "float32", None).command(8000)
    assert DEFAULT_MAX_LORAS == 8
    assert cmd[cmd.index("--max-loras") + 1] == "8" and cmd[cmd.index("--max-cpu-loras") + 1] == "8"
    assert "--max-loras" not in StockVLLMNoLoRA(BenchAssets(tmp_path), "float32", None).command(8000)


def test_registers_the_largest_lora_n_of_the_run(tmp_path):
    stock = StockVLLM(BenchAssets(tmp_path))
    assert stock.loras() == [f"lora-{i}" for i in range(8)]
    stock.workloads = supported(StockVLLM.workloads, ["lora-1000", "lora-256", "soft"])
    assert stock.workloads == ("lora-1000", "lora-256", "soft") and len(set(stock.loras())) == 1000
    assert StockVLLMNoLoRA(BenchAssets(tmp_path)).workloads == ("base",)
    assert supported(StockVLLMNoLoRA.workloads, ["lora-1000", "base"]) == ("base",)


def test_cold_request_copies_then_loads_inside_the_clock(tmp_path):
    assets = BenchAssets(tmp_path / "assets")
    _fake_adapter(assets.adapters / "lora-0")
    stock = StockVLLM(assets)
    try:
        path, body, prelude = stock.request(Target("lora-0", cold=True), 3)
        assert isinstance(prelude, Prelude) and prelude.setup is not None and prelude.timed is not None
        name = body["model"]
        assert name.startswith("cold-") and path == "/v1/completions"
        prelude.setup()
        copy = stock.workdir() / "cold" / name
        assert (copy / "adapter_config.json").is_file() and not copy.is_relative_to(assets.root)
        assert prelude.timed.keywords == {"name": name, "path": copy}  # POSTed to /v1/load_lora_adapter
    finally:
        stock.cleanup()


@pytest.mark.parametrize("workload", ["lora-48", "lora-1000", "cold"])
def test_hf_peft_does_not_run_the_new_workloads(workload):
    from loadtests.bench.hf_peft import HFPeft
    from loadtests.bench.ours import Ours

    assert supported(HFPeft.workloads, [workload]) == ()
    assert supported(StockVLLM.workloads, [workload]) == supported(Ours.workloads, [workload]) == (workload,)
