"""The report's lora-N and cold tables from synthetic results (no plots: render() is slower)."""

from __future__ import annotations

import json

from loadtests.bench import report
from tests.loadtests.bench.test_load_and_report import _cell


def _results(cells, workloads, concurrency=(1, 16), **extra):
    return {"command": "x", "date": "d", "machine": "m", "warmup_s": 1, "duration_s": 2, "max_tokens": 64,
            "contenders": ["ours", "stock-vllm"], "workloads": workloads, "concurrency": list(concurrency),
            "descriptions": {}, "notes": [], "cells": cells, **extra}


def test_48_vs_8_lora_ratio_per_contender():
    cells = [_cell("ours", "lora-8", 16, 800, 100), _cell("ours", "lora-48", 16, 600, 150),
             _cell("stock-vllm", "lora-8", 16, 500, 200), _cell("stock-vllm", "lora-48", 16, 250, 500),
             _cell("ours", "lora-48", 1, 60, 30)]  # no lora-8 at 1: no row
    # The engine's running requests (sampled gauge): with 4 slots, 48 adapters share fewer batches.
    cells[0]["stats"]["running_mean"], cells[1]["stats"]["running_mean"] = 8.0, 4.2
    md = report.targets(_results(cells, ["lora-8", "lora-48"], max_loras=4, max_cpu_loras=4))
    assert "**48-LoRA mix vs 8-LoRA mix** (lora-48 with --max-loras 4 --max-cpu-loras 4; lora-8: same run, same flags" in md
    assert "| 16 | ours | 600 | 800 | 0.75x | 1.50x | 4.2 / 8.0 | 0 |" in md
    assert "| 16 | stock-vllm | 250 | 500 | 0.50x | 2.50x | - / - | 0 |" in md
    assert "| 1 | ours |" not in md


def test_one_table_per_lora_n_at_server_defaults():
    cells = [_cell("ours", "lora-8", 16, 800, 100), _cell("ours", "lora-256", 16, 700, 120),
             _cell("ours", "lora-1000", 16, 400, 200), _cell("stock-vllm", "lora-8", 16, 500, 200),
             _cell("stock-vllm", "lora-256", 16, 100, 1000)]
    cells[1]["stats"]["running_mean"] = 15.5
    md = report.targets(_results(cells, ["lora-8", "lora-256", "lora-1000"], max_loras="default",
                                 max_cpu_loras="default"))
    flags = "server defaults (stock vLLM: --max-loras 8 --max-cpu-loras 8)"
    assert f"**256-LoRA mix vs 8-LoRA mix** (lora-256 with {flags}; lora-8: same run, same flags" in md
    assert f"**1000-LoRA mix vs 8-LoRA mix** (lora-1000 with {flags}; lora-8: same run" in md
    assert md.index("**256-LoRA") < md.index("**1000-LoRA")  # in the run's order
    assert ("| conc. | contender | lora-256 tokens/s | lora-8 tokens/s | tokens/s ratio | TTFT p50 ratio "
            "| running (256 / 8) | lora-256 errors |") in md
    assert "| 16 | ours | 700 | 800 | 0.88x | 1.20x | 15.5 / - | 0 |" in md
    assert "| 16 | stock-vllm | 100 | 500 | 0.20x | 5.00x | - / - | 0 |" in md
    assert "| 16 | ours | 400 | 800 | 0.50x | 2.00x | - / - | 0 |" in md
    assert "48-LoRA" not in md and "--max-loras default" not in md


def test_48_vs_8_without_lora_8_says_so_and_no_section_without_lora_48():
    md = report.targets(_results([_cell("ours", "lora-48", 16, 600, 150)], ["lora-48"]))
    assert "no lora-8 cell to compare with: run `--workloads lora-8,lora-48`" in md
    assert "48-LoRA" not in report.targets(_results([_cell("ours", "lora-8", 16, 1, 1)], ["lora-8"]))


def test_lora_8_from_another_run(tmp_path):
    run = tmp_path / "run"
    other = tmp_path / "other"
    for d in (run, other):
        d.mkdir()
    (run / "results.json").write_text(json.dumps(_results(
        [_cell("ours", "lora-48", 16, 600, 150)], ["lora-48"], max_loras=4, max_cpu_loras=4)))
    (other / "results.json").write_text(json.dumps(_results(
        [_cell("ours", "lora-8", 16, 1000, 50), _cell("ours", "base", 16, 1200, 40)], ["base", "lora-8"],
        max_loras=8, max_cpu_loras=8)))
    report.main([str(run / "results.json"), "--lora-8-from", str(other / "results.json")])
    md = (run / "results.md").read_text()
    assert f"lora-8: lora-8 from {other / 'results.json'} (--max-loras 8 --max-cpu-loras 8)" in md
    assert "| 16 | ours | 600 | 1,000 | 0.60x | 3.00x | - / - | 0 |" in md
    saved = json.loads((run / "results.json").read_text())["lora_8_reference"]
    assert [c["workload"] for c in saved["cells"]] == ["lora-8"]


def test_cold_vs_warm_ttft_table():
    cold_ours = _cell("ours", "cold", 1, 40, 90)
    cold_ours["stats"].update(ttft_p99_ms=300, requests=12)
    cold_stock = _cell("stock-vllm", "cold", 1, 30, 150)
    cold_stock["stats"].update(ttft_p99_ms=450, requests=9, errors=1)
    cells = [_cell("ours", "lora-1", 1, 60, 30), _cell("stock-vllm", "lora-1", 1, 50, 50), cold_ours, cold_stock]
    results = _results(cells, ["lora-1", "cold"])
    md = report.table(results) + "\n" + report.targets(results)
    assert "**Cold vs warm adapter TTFT, same server**" in md
    assert "| 1 | ours | 90 | 300 | 30 | 3.00x | 10.00x | 12 | 0 |" in md
    assert "| 1 | stock-vllm | 150 | 450 | 50 | 3.00x | 9.00x | 9 | 1 |" in md
    assert "Cold vs warm" not in report.targets(_results(cells[:2], ["lora-1"]))


def test_cold_without_warm_cell_still_shows_cold_figures():
    cold = _cell("ours", "cold", 4, 40, 90)
    cold["stats"].update(requests=3)
    md = report.targets(_results([cold], ["cold"], concurrency=(4,)))
    assert "| 4 | ours | 90 | 90 | - | - | - | 3 | 0 |" in md


def test_cpu_split_table_lists_the_cells_that_read_it():
    cells = [_cell("ours", "base", 16, 250, 900), _cell("stock-vllm", "base", 16, 150, 1900)]
    cells[0]["stats"].update(cpu_server_main=0.09, cpu_server_others=1.85, cpu_client=0.05)
    md = report.cpu_split(_results(cells, ["base"], concurrency=(16,)))
    assert "| base | 16 | ours | 0.09 | 1.85 | 0.05 | 1.99 |" in md
    assert "stock-vllm" not in md  # a cell without the figures (results from before them)
    assert report.cpu_split(_results(cells[1:], ["base"], concurrency=(16,))) == ""
