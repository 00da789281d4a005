"""The start-up benchmark's parts that need no server: cache isolation, medians, the report."""

from __future__ import annotations

from pathlib import Path

from loadtests import startup

RUNS = [{"ready_s": 30.0, "first_request_s": 0.5, "phases": {"total": 30.0, "profile": 20.0, "imports": 6.0}},
        {"ready_s": 34.0, "first_request_s": 0.7, "phases": {"total": 34.0, "profile": 22.0, "imports": 7.0}},
        {"ready_s": 31.0, "first_request_s": 0.4, "phases": {"total": 31.0, "imports": 5.0}}]


def test_every_cache_of_a_start_goes_into_the_given_folder(tmp_path):
    env = startup.cache_env(tmp_path)
    assert set(env) == {"VLLM_CACHE_ROOT", "TORCHINDUCTOR_CACHE_DIR", "ADAPTER_SERVE_KERNEL_CACHE"}
    assert all(Path(v).parent == tmp_path for v in env.values())


def test_both_servers_get_the_same_engine_options(tmp_path):
    model = startup.Model("demo", tmp_path / "base", tmp_path / "adapters", "float32")
    ours, stock = (startup.server_command(s, model, 8123) for s in ("ours", "stock-vllm"))
    for flag in ("--dtype", "--max-model-len", "--max-loras", "--max-lora-rank", "--served-model-name"):
        assert ours[ours.index(flag) + 1] == stock[stock.index(flag) + 1], flag
    assert "--enable-lora" in stock  # ours serves LoRA always
    assert stock[stock.index("--kv-cache-memory-bytes") + 1] == str(2**30) == str(
        int(float(ours[ours.index("--kv-cache-gib") + 1]) * 2**30))


def test_medians_and_report():
    summary = startup.summarize(RUNS)
    assert summary["ready_s"] == 31.0 and summary["first_request_s"] == 0.5
    # A missing phase counts 0; phases in the breakdown's order, the total last.
    assert list(summary["phases"].items()) == [("imports", 6.0), ("profile", 20.0), ("total", 31.0)]
    results = {"date": "d", "machine": "m", "command": "c",
               "summary": {"demo/ours": {"cold": summary, "warm": startup.summarize(RUNS[:1])},
                           "demo/stock-vllm": {"cold": {**summary, "phases": {}},
                                               "warm": {**summary, "phases": {}}}}}
    text = startup.render(results)
    assert "| demo | ours | 31.0 | 30.0 | 500 / 500 |" in text
    assert "| demo | stock-vllm | 31.0 | 31.0 | 500 / 500 |" in text
    assert "| profile | 20.00 | 20.00 |" in text
    assert "Phases of demo/stock-vllm" not in text


def test_ours_eager_is_ours_without_compilation(tmp_path):
    model = startup.Model("demo", tmp_path / "base", tmp_path / "adapters", "float32")
    ours, eager = (startup.server_command(s, model, 8123) for s in ("ours", "ours-eager"))
    assert eager == [*ours, "--engine-arg", "enforce_eager=true"]
    assert startup.server_command("ours-spawned", model, 8123) == [*ours, "--no-prestart-engine"]
