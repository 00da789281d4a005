"""Results -> markdown table (ratios against stock vLLM), target checks, and PNG plots.

    .venv/bin/python -m loadtests.bench.report loadtests/results/latest/results.json   # re-render
    .venv/bin/python -m loadtests.bench.report RUN/results.json --lora-8-from OTHER/results.json

`--lora-8-from`: also set RUN's lora-N cells (lora-48, lora-1000, ...) against OTHER's lora-8
cells (e.g. lora-48 at --max-loras 4 against lora-8 at the default --max-loras 8); stored in
RUN's results.json as `lora_8_reference` and re-rendered into its results.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from loadtests.bench.stock_vllm import DEFAULT_MAX_LORAS  # noqa: E402
from loadtests.bench.workloads import many_loras  # noqa: E402

REFERENCE = "stock-vllm"
NOLORA = "stock-vllm-nolora"
JSON = "json"  # the structured-outputs workload
COLD = "cold"  # a never-seen adapter per request
WARM = "lora-1"  # cold's reference: one adapter, loaded before the cell
COLORS = {"ours": "tab:blue", REFERENCE: "tab:orange", NOLORA: "tab:gray", "hf-peft": "tab:green"}


def _fmt(value, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _ratio(a, b) -> float | None:
    return None if a is None or not b else a / b


def _median(values: list):
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def index(cells: list[dict]) -> dict[tuple[str, str, int], dict]:
    """One cell per (contender, workload, concurrency); with --rounds > 1 each figure is the
    median over the rounds (errors: the sum), so one disturbed round does not decide a ratio."""
    groups: dict[tuple[str, str, int], list[dict]] = {}
    for c in cells:
        groups.setdefault((c["contender"], c["workload"], c["concurrency"]), []).append(c)
    merged = {}
    for key, group in groups.items():
        if len(group) == 1:
            merged[key] = group[0]
            continue
        stats = {}
        for name, value in group[0]["stats"].items():
            values = [g["stats"][name] for g in group]
            if name == "errors":
                stats[name] = sum(values)
            elif isinstance(value, (int, float)) or value is None:
                stats[name] = _median(values)
            else:
                stats[name] = value
        merged[key] = {**group[0], "stats": stats, "rounds": len(group),
                       "peak_rss_bytes": max(g["peak_rss_bytes"] or 0 for g in group) or None}
    return merged


def table(results: dict) -> str:
    cells = index(results["cells"])
    rows = ["| workload | conc. | contender | tokens/s | req/s | TTFT p50 ms | TTFT p99 ms | latency p50 ms "
            "| latency p99 ms | peak RSS MiB | tokens/s vs stock | TTFT p50 vs stock | errors |",
            "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for workload in results["workloads"]:
        for conc in results["concurrency"]:
            ref = cells.get((REFERENCE, workload, conc))
            for contender in results["contenders"]:
                c = cells.get((contender, workload, conc))
                if c is None:
                    continue
                s = c["stats"]
                tok_ratio = _ratio(s["tokens_per_s"], ref and ref["stats"]["tokens_per_s"])
                ttft_ratio = _ratio(s["ttft_p50_ms"], ref and ref["stats"]["ttft_p50_ms"])
                rows.append(
                    f"| {workload} | {conc} | {contender} | {_fmt(s['tokens_per_s'])} | {_fmt(s['requests_per_s'], 2)} "
                    f"| {_fmt(s['ttft_p50_ms'])} | {_fmt(s['ttft_p99_ms'])} | {_fmt(s['latency_p50_ms'])} "
                    f"| {_fmt(s['latency_p99_ms'])} | {_fmt(c['peak_rss_bytes'] / 2**20)} "
                    f"| {_fmt(tok_ratio, 2)}x | {_fmt(ttft_ratio, 2)}x | {s['errors']} |".replace("| -x", "| -"))
    return "\n".join(rows)


def cpu_split(results: dict) -> str:
    """Cores busy per cell (medians over the rounds): the server's main process, its other
    processes, the load generator; empty for results from before the bench read them."""
    cells = index(results["cells"])
    rows = []
    for workload in results["workloads"]:
        for conc in results["concurrency"]:
            for contender in results["contenders"]:
                s = (cells.get((contender, workload, conc)) or {}).get("stats", {})
                parts = [s.get(k) for k in ("cpu_server_main", "cpu_server_others", "cpu_client")]
                if None in parts:
                    continue
                rows.append(f"| {workload} | {conc} | {contender} | {parts[0]:.2f} | {parts[1]:.2f} "
                            f"| {parts[2]:.2f} | {sum(parts):.2f} |")
    if not rows:
        return ""
    return ("## Where the CPU went\n\n"
            "Cores busy during the measured window (CPU seconds per second, on the machine above): "
            "the server's main process (HTTP, tokenising, detokenising), its other processes (engine "
            "core, workers), and the load generator (with the bench's memory sampling), which shares the "
            "machine.\n\n"
            "| workload | conc. | contender | server main | server others | load generator | total |\n"
            "|---|---:|---|---:|---:|---:|---:|\n" + "\n".join(rows) + "\n\n")


def targets(results: dict) -> str:
    """The issue's targets, cell by cell, with PASS/MISS."""
    cells = index(results["cells"])
    lines = []

    def stat(contender, workload, conc, key):
        c = cells.get((contender, workload, conc))
        return None if c is None else c["stats"].get(key)  # .get: results from before a field existed

    lines.append("**ours vs stock vLLM** (target: tokens/s >= 1.0x, TTFT p50 <= 1.1x)\n")
    lines.append("| workload | conc. | tokens/s ratio | TTFT p50 ratio | verdict |")
    lines.append("|---|---:|---:|---:|---|")
    for workload in results["workloads"]:
        for conc in results["concurrency"]:
            tok = _ratio(stat("ours", workload, conc, "tokens_per_s"), stat(REFERENCE, workload, conc, "tokens_per_s"))
            ttft = _ratio(stat("ours", workload, conc, "ttft_p50_ms"), stat(REFERENCE, workload, conc, "ttft_p50_ms"))
            if tok is None:
                continue  # one of the two did not run this cell
            ok = tok >= 1.0 and ttft is not None and ttft <= 1.1
            lines.append(f"| {workload} | {conc} | {tok:.2f}x | {_fmt(ttft, 2)}x | {'PASS' if ok else 'MISS'} |"
                         .replace("| -x |", "| - |"))

    lines.append("\n**Base-model requests, LoRA-enabled vs LoRA-disabled server** (target: >= 0.95x; "
                 f"denominator: {NOLORA})\n")
    lines.append("| conc. | ours (LoRA on) | stock vLLM --enable-lora | verdict (ours) |")
    lines.append("|---:|---:|---:|---|")
    for conc in results["concurrency"]:
        off = stat(NOLORA, "base", conc, "tokens_per_s")
        ours = _ratio(stat("ours", "base", conc, "tokens_per_s"), off)
        stock = _ratio(stat(REFERENCE, "base", conc, "tokens_per_s"), off)
        if ours is None and stock is None:
            continue
        verdict = "-" if ours is None else ("PASS" if ours >= 0.95 else "MISS")
        lines.append(f"| {conc} | {_fmt(ours, 2)}x | {_fmt(stock, 2)}x | {verdict} |".replace("| -x", "| -"))

    lines.append("\n**Soft prompt vs base, same server** (target for ours: tokens/s >= 0.95x, "
                 "TTFT p50 <= 1.25x)\n")
    lines.append("| conc. | contender | tokens/s ratio | TTFT p50 ratio | verdict |")
    lines.append("|---:|---|---:|---:|---|")
    for conc in results["concurrency"]:
        for c in ("ours", REFERENCE):
            tok, ttft = (_ratio(stat(c, "soft", conc, key), stat(c, "base", conc, key))
                         for key in ("tokens_per_s", "ttft_p50_ms"))
            if tok is None or ttft is None:
                continue
            verdict = ("PASS" if tok >= 0.95 and ttft <= 1.25 else "MISS") if c == "ours" else "-"
            lines.append(f"| {conc} | {c} | {tok:.2f}x | {ttft:.2f}x | {verdict} |")

    if any(workload == JSON for _, workload, _ in cells):
        lines.append("")
        lines.append(structured_outputs(results, stat))

    lines.append("\n**8-LoRA mix vs base, same server** (measured; stock vLLM on this CPU ~0.42x at 16)\n")
    lines.append("| conc. | ours | stock vLLM | hf-peft |")
    lines.append("|---:|---:|---:|---:|")
    for conc in results["concurrency"]:
        r = [_ratio(stat(c, "lora-8", conc, "tokens_per_s"), stat(c, "base", conc, "tokens_per_s"))
             for c in ("ours", REFERENCE, "hf-peft")]
        if any(x is not None for x in r):
            lines.append(f"| {conc} | " + " | ".join(f"{_fmt(x, 2)}x" if x is not None else "-" for x in r) + " |")

    for workload in results["workloads"]:  # many LoRAs, the engine swapping (fewer slots than N)
        if many_loras(workload) and any(w == workload for _, w, _ in cells):
            lines += ["", many_vs_8_loras(results, cells, workload)]
    if any(workload == COLD for _, workload, _ in cells):
        lines += ["", cold_adapters(results, stat)]
    return "\n".join(lines)


def loras_flags(results: dict) -> str:
    """The servers' LoRA counts of a run, as its command line set them."""
    max_loras = results.get("max_loras", 8)  # 8: runs from before the flag
    if max_loras in ("default", None):  # --max-loras default
        return (f"server defaults (stock vLLM: --max-loras {DEFAULT_MAX_LORAS} "
                f"--max-cpu-loras {DEFAULT_MAX_LORAS})")
    return f"--max-loras {max_loras} --max-cpu-loras {results.get('max_cpu_loras') or max_loras}"


def many_vs_8_loras(results: dict, cells: dict, workload: str) -> str:
    """`workload` (lora-N: N LoRAs round robin) against lora-8 per contender and concurrency: from
    the same run, and from another run's lora-8 cells where `results["lora_8_reference"]` holds
    them."""
    n = many_loras(workload)
    flags = loras_flags(results)
    refs = [("same run, same flags", cells)]
    other = results.get("lora_8_reference")
    if other:
        refs.append((f"lora-8 from {other.get('source', 'another run')} ({loras_flags(other)})",
                     index(other["cells"])))
    lines = []
    for label, ref_cells in refs:
        lines += [f"**{n}-LoRA mix vs 8-LoRA mix** ({workload} with {flags}; lora-8: {label}; measured, "
                  "no target)\n",
                  f"| conc. | contender | {workload} tokens/s | lora-8 tokens/s | tokens/s ratio | TTFT p50 ratio "
                  f"| running ({n} / 8) | {workload} errors |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|"]
        rows = 0
        for conc in results["concurrency"]:
            for c in results["contenders"]:
                many, eight = cells.get((c, workload, conc)), ref_cells.get((c, "lora-8", conc))
                if many is None or eight is None:
                    continue
                m, e = many["stats"], eight["stats"]
                tok, ttft = (_ratio(m.get(key), e.get(key)) for key in ("tokens_per_s", "ttft_p50_ms"))
                running = f"{_fmt(m.get('running_mean'), 1)} / {_fmt(e.get('running_mean'), 1)}"
                lines.append(f"| {conc} | {c} | {_fmt(m['tokens_per_s'])} | {_fmt(e['tokens_per_s'])} "
                             f"| {_fmt(tok, 2)}x | {_fmt(ttft, 2)}x | {running} | {m['errors']} |"
                             .replace("| -x", "| -"))
                rows += 1
        if not rows:
            lines.append(f"| - | (no lora-8 cell to compare with: run `--workloads lora-8,{workload}`) "
                         "| | | | | | |")
        lines.append("")
    return "\n".join(lines).rstrip()


def cold_adapters(results: dict, stat) -> str:
    """cold (each request's adapter never seen before) TTFT against lora-1's (one warm adapter)."""
    lines = ["**Cold vs warm adapter TTFT, same server** (cold: the first request of a never-seen adapter, a "
             "copy of lora-0; warm: lora-1, the same adapter loaded before the cell; measured, no target)\n",
             "| conc. | contender | cold TTFT p50 ms | cold TTFT p99 ms | warm TTFT p50 ms | p50 cold/warm "
             "| p99 cold / p50 warm | cold requests | cold errors |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for conc in results["concurrency"]:
        for c in results["contenders"]:
            p50, p99 = stat(c, COLD, conc, "ttft_p50_ms"), stat(c, COLD, conc, "ttft_p99_ms")
            if p50 is None and stat(c, COLD, conc, "requests") is None:
                continue  # no cold cell for this contender (an errors-only cell still shows)
            warm = stat(c, WARM, conc, "ttft_p50_ms")
            lines.append(f"| {conc} | {c} | {_fmt(p50)} | {_fmt(p99)} | {_fmt(warm)} | {_fmt(_ratio(p50, warm), 2)}x "
                         f"| {_fmt(_ratio(p99, warm), 2)}x | {stat(c, COLD, conc, 'requests')} "
                         f"| {stat(c, COLD, conc, 'errors')} |".replace("| -x", "| -"))
    return "\n".join(lines)


def structured_outputs(results: dict, stat) -> str:
    """The `json` workload (response_format json_schema) against plain requests on the same server
    (target for ours: tokens/s >= 0.90x) and against stock vLLM's structured outputs (>= 1.0x)."""
    lines = ["**Structured outputs: json_schema vs plain (base), same server** (target for ours: "
             "tokens/s >= 0.90x; TTFT p50 ratio shown)\n",
             "| conc. | contender | tokens/s ratio | TTFT p50 ratio | tokens/request json (base) | verdict |",
             "|---:|---|---:|---:|---:|---|"]
    for conc in results["concurrency"]:
        for c in ("ours", REFERENCE):
            tok, ttft = (_ratio(stat(c, JSON, conc, key), stat(c, "base", conc, key))
                         for key in ("tokens_per_s", "ttft_p50_ms"))
            if tok is None:
                continue
            lengths = (f"{_fmt(stat(c, JSON, conc, 'output_tokens_mean'), 1)} "
                       f"({_fmt(stat(c, 'base', conc, 'output_tokens_mean'), 1)})")
            verdict = ("PASS" if tok >= 0.90 else "MISS") if c == "ours" else "-"
            lines.append(f"| {conc} | {c} | {tok:.2f}x | {_fmt(ttft, 2)}x | {lengths} | {verdict} |"
                         .replace("| -x |", "| - |"))
    lines += ["\n**Structured outputs: ours vs stock vLLM, json_schema requests** (target: tokens/s "
              ">= 1.0x; TTFT p50 ratio shown)\n",
              "| conc. | ours tokens/s | stock tokens/s | tokens/s ratio | TTFT p50 ratio | verdict |",
              "|---:|---:|---:|---:|---:|---|"]
    for conc in results["concurrency"]:
        ours, stock = (stat(c, JSON, conc, "tokens_per_s") for c in ("ours", REFERENCE))
        tok = _ratio(ours, stock)
        if tok is None:
            continue
        ttft = _ratio(stat("ours", JSON, conc, "ttft_p50_ms"), stat(REFERENCE, JSON, conc, "ttft_p50_ms"))
        lines.append(f"| {conc} | {_fmt(ours)} | {_fmt(stock)} | {tok:.2f}x | {_fmt(ttft, 2)}x "
                     f"| {'PASS' if tok >= 1.0 else 'MISS'} |".replace("| -x |", "| - |"))
    return "\n".join(lines)


def plots(results: dict, out: Path) -> list[Path]:
    cells = index(results["cells"])
    written = []
    for key, ylabel, fname, log in (("tokens_per_s", "output tokens/s", "throughput.png", False),
                                    ("ttft_p50_ms", "TTFT p50 (ms, log)", "ttft.png", True)):
        workloads = results["workloads"]
        fig, axes = plt.subplots(1, len(workloads), figsize=(4 * len(workloads), 3.6), squeeze=False)
        for ax, workload in zip(axes[0], workloads):
            for contender in results["contenders"]:
                points = [(conc, cells[(contender, workload, conc)]["stats"][key]) for conc in results["concurrency"]
                          if (contender, workload, conc) in cells
                          and cells[(contender, workload, conc)]["stats"][key] is not None]
                if points:
                    ax.plot(*zip(*points), marker="o", label=contender, color=COLORS.get(contender))
            ax.set_title(workload)
            ax.set_xlabel("concurrent streams")
            ax.set_xscale("log", base=2)
            ax.set_xticks(results["concurrency"], [str(c) for c in results["concurrency"]])
            if log:
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel(ylabel)
        handles = {label: h for ax in axes[0] for h, label in zip(*ax.get_legend_handles_labels())}
        fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=len(handles), fontsize=8)
        fig.suptitle(f"{ylabel} vs concurrency ({results['max_tokens']} output tokens per request)")
        fig.tight_layout(rect=(0, 0.08, 1, 1))
        fig.savefig(out / fname, dpi=110)
        plt.close(fig)
        written.append(out / fname)
    return written


def render(results: dict, out: Path) -> str:
    """Write results.md and the plots into `out`; return the markdown."""
    notes = "\n".join(f"- {n}" for n in results.get("notes", []))
    md = (f"# Benchmark results\n\n"
          f"Command: `{results['command']}`  \n"
          f"Date: {results['date']}; machine: {results['machine']}; "
          f"{results['warmup_s']:.0f} s warm-up + {results['duration_s']:.0f} s measured per cell; "
          f"{results['max_tokens']} output tokens per request (greedy)"
          + (f"; {results['rounds']} rounds (all servers up, the contenders of a cell measured back to "
             f"back), every figure the median over the rounds" if results.get("rounds", 1) > 1 else "") + ".\n\n"
          "Contenders:\n" + "\n".join(f"- `{k}`: {v}" for k, v in results["descriptions"].items()) +
          (f"\n\nNotes:\n{notes}" if notes else "") +
          f"\n\n## Table\n\n{table(results)}\n\n{cpu_split(results)}## Targets\n\n{targets(results)}\n\n"
          f"![throughput](throughput.png)\n![ttft](ttft.png)\n")
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(md)
    plots(results, out)
    return md


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m loadtests.bench.report", description="re-render a bench run")
    p.add_argument("results", type=Path, help="a run's results.json")
    p.add_argument("--lora-8-from", type=Path, default=None,
                   help="another run's results.json whose lora-8 cells the lora-N cells are also set against")
    args = p.parse_args(argv)
    results = json.loads(args.results.read_text())
    if args.lora_8_from:
        other = json.loads(args.lora_8_from.read_text())
        results["lora_8_reference"] = {
            "source": str(args.lora_8_from), "max_loras": other.get("max_loras", 8),
            "max_cpu_loras": other.get("max_cpu_loras") or other.get("max_loras", 8),
            "cells": [c for c in other["cells"] if c["workload"] == "lora-8"]}
        args.results.write_text(json.dumps(results, indent=1))
    print(render(results, args.results.parent))


if __name__ == "__main__":
    main()
