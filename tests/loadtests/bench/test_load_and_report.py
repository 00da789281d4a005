"""The benchmark's arithmetic and report on synthetic records (fast, no server)."""

from __future__ import annotations

import pytest

from loadtests.bench import report
from loadtests.bench.load import Record, summarize


def _record(start, ttft, chunk_gap, n, finished=True):
    chunks = [start + ttft + k * chunk_gap for k in range(n)]
    return Record(start, chunks[-1] if finished else start, ttft, n if finished else 0,
                  chunk_times=chunks, finished=finished)


def test_throughput_counts_tokens_streamed_inside_the_window():
    # Window [10, 20]. A: all 10 tokens inside. B: started in warm-up, tokens at 6..15, 6 inside.
    # C: cancelled at the end with 4 tokens streamed inside. D: entirely after the window.
    records = [_record(11, 1, 0.5, 10), _record(5, 1, 1.0, 10), _record(16, 0.5, 1.0, 4, finished=False),
               _record(21, 1, 1, 3)]
    stats = summarize(records, 10.0, 20.0, max_tokens=10)
    assert stats.tokens == 10 + 6 + 4
    assert stats.tokens_per_s == pytest.approx(2.0)
    assert stats.requests == 2  # A and B finished inside the window; C was cancelled, D is later
    assert stats.errors == 0 and stats.short_outputs == 0


def test_ttft_and_latency_percentiles_use_requests_inside_the_window():
    records = [_record(10 + i, 0.1 * (i + 1), 0.01, 5) for i in range(5)]
    stats = summarize(records, 10.0, 20.0, max_tokens=8)
    assert stats.ttft_p50_ms == pytest.approx(300)
    assert stats.short_outputs == 5


def test_errors_are_counted_not_measured():
    bad = Record(12, 13, None, 0, error="HTTP 500: boom", chunk_times=[], finished=True)
    stats = summarize([bad, _record(11, 1, 0.1, 4)], 10.0, 20.0, max_tokens=4)
    assert stats.errors == 1 and stats.requests == 1 and stats.first_error.startswith("HTTP 500")


def _cell(contender, workload, conc, tok, ttft):
    return {"contender": contender, "workload": workload, "concurrency": conc, "peak_rss_bytes": 2**30,
            "stats": {"tokens_per_s": tok, "requests_per_s": tok / 64, "ttft_p50_ms": ttft, "ttft_p99_ms": ttft,
                      "latency_p50_ms": 1.0, "latency_p99_ms": 2.0, "errors": 0}}


def test_report_writes_table_targets_and_plots(tmp_path):
    results = {
        "command": "x", "date": "d", "machine": "m", "warmup_s": 1, "duration_s": 2, "max_tokens": 64,
        "contenders": ["ours", "stock-vllm", "stock-vllm-nolora"], "workloads": ["base", "lora-8", "soft"],
        "concurrency": [1, 16], "descriptions": {}, "notes": [],
        "cells": [_cell("ours", "base", 1, 100, 10), _cell("stock-vllm", "base", 1, 80, 10),
                  _cell("stock-vllm-nolora", "base", 1, 100, 9), _cell("ours", "lora-8", 1, 50, 20),
                  _cell("stock-vllm", "lora-8", 1, 40, 12), _cell("ours", "soft", 1, 96, 12),
                  _cell("stock-vllm", "soft", 1, 60, 30)],
    }
    md = report.render(results, tmp_path)
    assert "| base | 1 | ours | 100 |" in md and "| 1.25x | 1.00x |" in md
    assert "| base | 1 | 1.25x | 1.00x | PASS |" in md
    assert "| lora-8 | 1 | 1.25x | 1.67x | MISS |" in md
    assert "| 1 | 1.00x | 0.80x | PASS |" in md  # base on LoRA-enabled vs disabled
    assert "| 1 | 0.50x | 0.50x | - |" in md  # 8-LoRA mix vs base
    assert "| 1 | ours | 0.96x | 1.20x | PASS |" in md  # soft prompt vs base
    assert "| 1 | stock-vllm | 0.75x | 3.00x | - |" in md
    assert (tmp_path / "throughput.png").stat().st_size > 0 and (tmp_path / "ttft.png").exists()


def test_rounds_are_merged_by_median():
    rounds = [_cell("ours", "base", 16, tps, ttft) for tps, ttft in ((100, 10), (60, 30), (90, 12))]
    for i, c in enumerate(rounds):
        c["round"] = i + 1
        c["stats"]["errors"] = i
    merged = report.index(rounds)[("ours", "base", 16)]
    assert merged["rounds"] == 3
    assert merged["stats"]["tokens_per_s"] == 90 and merged["stats"]["ttft_p50_ms"] == 12
    assert merged["stats"]["errors"] == 3


def test_output_tokens_mean_covers_measured_requests():
    records = [_record(11, 1, 0.1, 64), _record(12, 1, 0.1, 60), _record(21, 1, 0.1, 10)]  # last: after
    stats = summarize(records, 10.0, 20.0, max_tokens=64)
    assert stats.output_tokens_mean == pytest.approx(62) and stats.short_outputs == 1


def _json_results(cells, concurrency=(16,)):
    return {"command": "x", "date": "d", "machine": "m", "warmup_s": 1, "duration_s": 2, "max_tokens": 64,
            "contenders": ["ours", "stock-vllm"], "workloads": ["base", "json"], "concurrency": list(concurrency),
            "descriptions": {}, "notes": [], "cells": cells}


def test_report_structured_outputs_targets():
    cells = [_cell("ours", "base", 16, 700, 250), _cell("ours", "json", 16, 651, 300),
             _cell("stock-vllm", "base", 16, 600, 400), _cell("stock-vllm", "json", 16, 420, 500),
             _cell("ours", "base", 1, 70, 50), _cell("ours", "json", 1, 60, 60),
             _cell("stock-vllm", "base", 1, 70, 50), _cell("stock-vllm", "json", 1, 63, 50)]
    for c in cells:
        c["stats"]["output_tokens_mean"] = 64.0
    results = _json_results(cells, (1, 16))
    md = report.table(results) + "\n" + report.targets(results)  # render() adds the plots: slower
    assert "**Structured outputs: json_schema vs plain (base), same server**" in md
    assert "| 16 | ours | 0.93x | 1.20x | 64.0 (64.0) | PASS |" in md  # json/base on ours
    assert "| 16 | stock-vllm | 0.70x | 1.25x | 64.0 (64.0) | - |" in md
    assert "| 1 | ours | 0.86x | 1.20x | 64.0 (64.0) | MISS |" in md
    assert "| 16 | 651 | 420 | 1.55x | 0.60x | PASS |" in md  # ours vs stock, json
    assert "| 1 | 60 | 63 | 0.95x | 1.20x | MISS |" in md
    assert "| json | 16 | ours | 651 |" in md  # and in the main table, against stock


def test_report_without_json_cells_has_no_structured_section():
    md = report.targets(_json_results([_cell("ours", "base", 16, 700, 250)]))
    assert "Structured outputs" not in md


def test_json_requests_carry_the_schema_and_no_ignore_eos(tmp_path):
    from loadtests.bench.assets import BenchAssets
    from loadtests.bench.hf_peft import HFPeft
    from loadtests.bench.ours import Ours
    from loadtests.bench.stock_vllm import StockVLLM
    from loadtests.bench.workloads import JSON_SCHEMA, MAX_TOKENS, Target, workloads

    assets = BenchAssets(tmp_path)
    assert workloads(assets)["json"].target(5) == Target(json_schema=True)
    ours, stock = Ours(assets), StockVLLM(assets)
    ours.ignore_eos = True
    for contender in (ours, stock):
        assert "json" in contender.workloads
        path, body = contender.request(Target(json_schema=True), 7)
        assert path == "/v1/completions" and body["model"] == "base" and body["stream"] is True
        assert body["response_format"] == {"type": "json_schema",
                                           "json_schema": {"name": "bench_digits", "schema": JSON_SCHEMA}}
        assert "ignore_eos" not in body and body["max_tokens"] == MAX_TOKENS and body["temperature"] == 0.0
        _, plain = contender.request(Target(), 7)
        assert plain["ignore_eos"] is True and "response_format" not in plain
        assert {k: v for k, v in body.items() if k != "response_format"} == \
            {k: v for k, v in plain.items() if k != "ignore_eos"}  # same prompt and sampling otherwise
    assert "json" not in HFPeft.workloads


def test_json_schema_fixes_the_output_length():
    """`"`, 61 digits, `"`, EOS: MAX_TOKENS tokens on the bench tokenizer (single-digit tokens)."""
    import re

    from loadtests.bench.workloads import JSON_SCHEMA, MAX_TOKENS

    digits = int(re.fullmatch(r"\^\[0-9\]\{(\d+)\}\$", JSON_SCHEMA["pattern"]).group(1))
    assert JSON_SCHEMA["type"] == "string" and 1 + digits + 1 + 1 == MAX_TOKENS
