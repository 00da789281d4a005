"""One command, one run, side by side: this server vs stock vLLM vs transformers+PEFT.

    .venv/bin/python -m loadtests.bench --quick                      # concurrency 1 and 16, short cells
    .venv/bin/python -m loadtests.bench                              # concurrency 1, 4, 16, 32; 5 s + 20 s cells
    .venv/bin/python -m loadtests.bench --contenders ours,stock-vllm --workloads base,lora-8 --concurrency 16
    .venv/bin/python -m loadtests.bench --contenders ours,stock-vllm --workloads lora-8,lora-48 --max-loras 4
    .venv/bin/python -m loadtests.bench --contenders ours --workloads lora-8,lora-256,lora-1000 --max-loras default
    .venv/bin/python -m loadtests.bench --contenders ours,stock-vllm --workloads lora-1,cold
    .venv/bin/python -m loadtests.bench --model-shape qwen2.5-0.5b --contenders ours,stock-vllm \
        --workloads base,lora-8,lora-1000,soft,lora-1,cold --max-loras default --concurrency 16 --rounds 3

`--model-shape`: the bench model is a random Llama of the `bench` shape (~26M parameters, the
default) or of Qwen2.5-0.5B's shapes (`qwen2.5-0.5b`: 494M parameters, ~1 GB in bfloat16, rank-16
LoRAs of 17.6 MB), built once with its adapters into a folder of its own
(loadtests/results/assets-qwen2.5-0.5b unless --assets says otherwise).

Two kinds of workload are not run by default:
- `lora-N`, any N above 8 (`lora-48`, `lora-256`, `lora-1000`, ...): round robin over N rank-16
  LoRAs lora-0..N-1 (the extra ones are built under --assets on first use, for the largest N of
  the run). Run it with fewer engine slots than N so that the engines swap adapters (e.g.
  `--workloads lora-8,lora-48 --max-loras 4`); the report gives an "N-LoRA mix vs 8-LoRA mix"
  table (tokens/s, TTFT p50) per contender and lora-N from the same run. --max-cpu-loras
  (default: --max-loras, both servers' own default) sizes the engines' host-memory LoRA cache,
  the same on ours and stock vLLM: by default a swapped-out LoRA is reloaded from disk. With
  `--max-loras default` (or `auto`) ours gets neither flag and sizes its slots itself (from
  memory on CPU, up to 256; 8 elsewhere), while stock vLLM, which sizes nothing, gets
  --max-loras 8 --max-cpu-loras 8: how each server copes with hundreds of adapters out of the
  box (e.g. `--workloads lora-8,lora-256,lora-1000 --max-loras default`). To set lora-N against lora-8
  at the default --max-loras 8 of another run: `python -m loadtests.bench.report
  RUN/results.json --lora-8-from OTHER_RUN/results.json`.
- `cold`: every request names an adapter the server has never seen (cold-<run>-<n>, a copy of
  lora-0 made just before it, in a scratch folder removed afterwards; ours serves a writable
  copy of the adapters folder for this). Stock vLLM's TTFT includes the client's
  POST /v1/load_lora_adapter. The report sets cold TTFT p50/p99 against lora-1's (one warm
  adapter) TTFT p50, per contender: run it with `lora-1`.

Each contender is started in turn on the same bench model and adapters (built once under
--assets), driven by the same closed-loop load generator (load.py), and killed afterwards (also
on Ctrl-C or errors). With --rounds N all contenders stay up and every cell is measured N times,
the contenders of a cell back to back, and reported as medians. Writes results.json, results.md (table + target checks) and PNG plots to
--out, and prints the markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

from loadtests.bench import report
from loadtests.bench.assets import (
    DEFAULT_SHAPE,
    NUM_LORAS,
    SHAPES,
    BenchAssets,
    ensure_assets,
    ensure_many_loras,
)
from loadtests.bench.contender import Contender
from loadtests.bench.hf_peft import HFPeft
from loadtests.bench.load import QueueSample, run_cell, summarize
from loadtests.bench.ours import Ours, OursMultiprocess, OursSpawned
from loadtests.bench.procs import CpuSplit, ServerProcess, free_port, install_cleanup, stop_all
from loadtests.bench.stock_vllm import DEFAULT_MAX_LORAS, StockVLLM, StockVLLMNoLoRA
from loadtests.bench.workloads import (
    JSON_SCHEMA,
    MAX_TOKENS,
    WORKLOAD_NAMES,
    is_workload,
    many_loras,
    most_loras,
    supported,
    workloads,
)

CONTENDERS: dict[str, type[Contender]] = {c.name: c for c in (Ours, OursMultiprocess, OursSpawned, StockVLLM,
                                                                StockVLLMNoLoRA, HFPeft)}
RESULTS = Path("loadtests/results")
SERVER_DEFAULT = "default"  # --max-loras default (or auto), as results.json records it


def max_loras_arg(value: str) -> int | None:
    """--max-loras: a count, or `default`/`auto` (None): each server's own LoRA sizing."""
    if value in (SERVER_DEFAULT, "auto"):
        return None
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number, `default` or `auto`, not {value!r}") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m loadtests.bench", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="concurrency 1 and 16, 3 s warm-up + 12 s cells")
    p.add_argument("--out", type=Path, default=None, help="results folder (default: loadtests/results/<time>)")
    p.add_argument("--model-shape", default=DEFAULT_SHAPE, choices=SHAPES,
                   help=f"the bench model's shapes (random weights, bfloat16): {DEFAULT_SHAPE} (~26M "
                        "parameters, the default) or qwen2.5-0.5b (Qwen2.5-0.5B's, 494M parameters)")
    p.add_argument("--assets", type=Path, default=None,
                   help=f"bench model + adapters, built if absent (default: {RESULTS}/assets for the "
                        f"{DEFAULT_SHAPE} shape, {RESULTS}/assets-<shape> for another)")
    p.add_argument("--contenders", default="ours,stock-vllm,stock-vllm-nolora,hf-peft",
                   help=f"comma-separated, among {', '.join(CONTENDERS)}")
    p.add_argument("--workloads", default="base,lora-1,lora-8,soft",
                   help=f"comma-separated, among {', '.join(WORKLOAD_NAMES)} (json: response_format "
                        "json_schema on the base model, ours and stock-vllm only; lora-N, any N > "
                        f"{NUM_LORAS}: N LoRAs round robin, ours and stock-vllm only, use with fewer "
                        "engine slots than N, e.g. lora-256,lora-1000 with --max-loras default; cold: a "
                        "never-seen adapter per request, use with lora-1; none of these run by default)")
    p.add_argument("--max-loras", type=max_loras_arg, default=8,
                   help="LoRAs per batch (engine adapter slots) of ours and stock vLLM (default 8); "
                        "`default` or `auto`: ours without --max-loras/--max-cpu-loras (it sizes its "
                        f"slots itself), stock vLLM with --max-loras {DEFAULT_MAX_LORAS} "
                        f"--max-cpu-loras {DEFAULT_MAX_LORAS}")
    p.add_argument("--max-cpu-loras", type=int, default=None,
                   help="LoRAs kept in host memory by ours and stock vLLM (default: --max-loras, "
                        "both servers' default; evicted ones reload from disk; needs a number of "
                        "--max-loras)")
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"),
                   help="engine dtype of ours and stock vLLM (float32 on CPUs without native bfloat16)")
    p.add_argument("--concurrency", default=None, help="comma-separated stream counts (default 1,4,16,32)")
    p.add_argument("--warmup", type=float, default=None, help="seconds of warm-up per cell (default 5)")
    p.add_argument("--duration", type=float, default=None, help="measured seconds per cell (default 20)")
    p.add_argument("--rounds", type=int, default=1,
                   help="measure every cell this many times, all servers up and the contenders of a "
                        "cell back to back; figures are medians over the rounds (for shared or "
                        "virtual machines, where one run's ratios are noisy)")
    args = p.parse_args(argv)
    args.concurrency = [int(c) for c in (args.concurrency or ("1,16" if args.quick else "1,4,16,32")).split(",")]
    args.warmup = args.warmup if args.warmup is not None else (3.0 if args.quick else 5.0)
    args.duration = args.duration if args.duration is not None else (12.0 if args.quick else 20.0)
    args.contenders = args.contenders.split(",")
    args.workloads = list(dict.fromkeys(args.workloads.split(",")))  # once each: a cell per name
    unknown = set(args.contenders) - set(CONTENDERS)
    if unknown:
        p.error(f"unknown contenders: {', '.join(sorted(unknown))}")
    unknown = [w for w in args.workloads if not is_workload(w)]
    if unknown:
        p.error(f"unknown workloads: {', '.join(unknown)} (lora-N needs N > {NUM_LORAS})")
    if args.max_loras is None:
        if args.max_cpu_loras is not None:
            p.error("--max-cpu-loras needs a number of --max-loras (with `default`, each server sizes both)")
    else:
        args.max_cpu_loras = args.max_cpu_loras or args.max_loras
        if args.max_loras < 1 or args.max_cpu_loras < args.max_loras:
            p.error("need 1 <= --max-loras <= --max-cpu-loras")
    args.out = args.out or RESULTS / time.strftime("%Y%m%d-%H%M%S")
    args.assets = args.assets or default_assets(args.model_shape)
    return args


def default_assets(shape: str) -> Path:
    """Each shape's assets in a folder of their own; the bench shape's where they always were."""
    return RESULTS / ("assets" if shape == DEFAULT_SHAPE else f"assets-{shape}")


def model_note(assets: BenchAssets) -> str:
    """The results' line on which model the tables are about (results.md shows the notes)."""
    built = assets.built()
    parameters = f" ({built['parameters']:,} parameters)" if built.get("parameters") else ""
    return (f"model: a random Llama of model shape `{built['shape']}`{parameters}, bfloat16, "
            f"assets in {assets.root}")


def start(contender: Contender, args, results: dict) -> ServerProcess:
    server = contender.start(free_port(), args.out / "logs" / f"{contender.name}.log")
    try:
        startup = server.wait_ready()
        contender.prepare(server)
    except BaseException:
        server.stop()
        contender.cleanup()
        raise
    print(f"== {contender.name}: ready in {startup:.0f} s ({contender.description})", flush=True)
    results["startup_s"][contender.name] = startup
    return server


def stop(contender: Contender, server: ServerProcess, results: dict, save) -> None:
    results["peak_rss_bytes"][contender.name] = server.peak_rss
    results["notes"] += [f"{contender.name}: {n}" for n in contender.notes]
    server.stop()
    contender.cleanup()  # its scratch folder (served adapter copies, cold adapters)
    save()


def measure(contender: Contender, server: ServerProcess, workload: str, conc: int, round_: int, args,
            all_workloads, results: dict, save) -> None:
    """One cell: warm-up then the measured window, appended to results["cells"]."""
    server.reset_window_peak()
    target = all_workloads[workload].target
    # Prompt numbering unique per cell: no cell reuses another's prompts (prefix cache).
    base = 1_000_000 * len(results["cells"])
    queue: list[QueueSample] = []
    cpu = CpuSplit(server)
    records, t_window, t_end = asyncio.run(run_cell(
        server.url, lambda i: contender.request(target(i), base + i),
        concurrency=conc, warmup=args.warmup, duration=args.duration, queue=queue,
        on_window=cpu.mark))
    stats = summarize(records, t_window, t_end, MAX_TOKENS, queue)
    for name, cores in (cpu.cores() or {}).items():
        setattr(stats, name, cores)
    results["cells"].append({"contender": contender.name, "workload": workload, "concurrency": conc,
                             "round": round_ + 1, "peak_rss_bytes": server.window_peak_rss,
                             "stats": stats.to_dict()})
    save()
    print(f"{contender.name:18s} {workload:9s} c={conc:<3d} {stats.tokens_per_s:8.1f} tok/s "
          f"{stats.requests_per_s:6.2f} req/s  TTFT p50 {stats.ttft_p50_ms or 0:8.1f} ms  "
          f"errors {stats.errors}  short {stats.short_outputs}  tokens/req {stats.output_tokens_mean or 0:.1f}"
          + (f"  running {stats.running_mean:.1f} waiting {stats.waiting_mean:.1f}"
             if stats.running_mean is not None else "")
          + (f"  cores: server {stats.cpu_server_main:.2f} + {stats.cpu_server_others:.2f}, "
             f"client {stats.cpu_client:.2f}" if stats.cpu_client is not None else "")
          + (f"  first error: {stats.first_error[:200]}" if stats.first_error else ""), flush=True)
    if server.proc.poll() is not None:
        raise RuntimeError(f"{contender.name} died during the run; log tail:\n{server.log_tail()}")
    time.sleep(1.0)  # let cancelled requests drain before the next cell


def cells_of(contender: Contender, args) -> list[tuple[str, int]]:
    return [(w, c) for w in args.workloads if w in contender.workloads for c in args.concurrency]


def run_in_turn(contenders: list[Contender], args, all_workloads, results: dict, save, failed: list) -> None:
    """One round: each contender started, measured on all its cells, stopped, then the next."""
    for contender in contenders:
        try:
            server = start(contender, args, results)
            try:
                for workload, conc in cells_of(contender, args):
                    measure(contender, server, workload, conc, 0, args, all_workloads, results, save)
            finally:
                stop(contender, server, results, save)
        except Exception as exc:  # one broken contender should not cost the others' figures
            fail(contender, exc, results, failed)


def run_interleaved(contenders: list[Contender], args, all_workloads, results: dict, save, failed: list) -> None:
    """--rounds > 1: all servers started (one by one) and kept up; every round measures each cell
    on every contender back to back, in an order rotated per round, so that a slow phase of a
    shared machine hits all contenders of a cell alike. The cells themselves run in reverse
    order every other round, so that same-server ratios (soft/base, 8-LoRA/base) do not depend
    on where a workload sits in the round. Idle servers use no CPU."""
    servers = {}
    try:
        for contender in contenders:
            try:
                servers[contender.name] = start(contender, args, results)
            except Exception as exc:
                fail(contender, exc, results, failed)
        up = [c for c in contenders if c.name in servers]
        cells = sorted({cell for c in up for cell in cells_of(c, args)},
                       key=lambda wc: (args.workloads.index(wc[0]), args.concurrency.index(wc[1])))
        for round_ in range(args.rounds):
            for workload, conc in (cells if round_ % 2 == 0 else cells[::-1]):
                turn = [c for c in up if (workload, conc) in cells_of(c, args) and c.name not in failed]
                shift = round_ % len(turn) if turn else 0
                for contender in turn[shift:] + turn[:shift]:
                    try:
                        measure(contender, servers[contender.name], workload, conc, round_, args,
                                all_workloads, results, save)
                    except Exception as exc:
                        fail(contender, exc, results, failed)
    finally:
        for contender in contenders:
            if contender.name in servers:
                stop(contender, servers[contender.name], results, save)


def fail(contender: Contender, exc: Exception, results: dict, failed: list) -> None:
    print(f"!! {contender.name} failed: {exc}", file=sys.stderr, flush=True)
    results["notes"].append(f"{contender.name} FAILED: {str(exc).splitlines()[0][:300]}")
    failed.append(contender.name)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    install_cleanup()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"assets: {args.assets}, model shape {args.model_shape} (building on first use)", flush=True)
    assets = ensure_assets(args.assets, args.model_shape)
    most = most_loras(args.workloads)
    if most:  # the smaller lora-N use the first of them
        print(f"assets: {most} LoRAs (building the missing ones)", flush=True)
        ensure_many_loras(assets, most)
    all_workloads = workloads(assets, args.workloads)
    results = {
        "command": shlex.join([".venv/bin/python", "-m", "loadtests.bench", *(sys.argv[1:] if argv is None else argv)]),
        "model_shape": assets.built()["shape"], "model_parameters": assets.built().get("parameters"),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load average at start "
                   f"{os.getloadavg()[0]:.1f}",
        "contenders": args.contenders, "workloads": args.workloads, "concurrency": args.concurrency,
        "warmup_s": args.warmup, "duration_s": args.duration, "max_tokens": MAX_TOKENS, "rounds": args.rounds,
        "max_loras": SERVER_DEFAULT if args.max_loras is None else args.max_loras,
        "max_cpu_loras": SERVER_DEFAULT if args.max_cpu_loras is None else args.max_cpu_loras,
        "descriptions": {n: CONTENDERS[n].description for n in args.contenders},
        "startup_s": {}, "peak_rss_bytes": {}, "cells": [], "notes": [model_note(assets)],
    }

    if "json" in args.workloads:
        results["notes"].append(f"json workload: every request has response_format json_schema with the schema "
                                f"`{json.dumps(JSON_SCHEMA)}` (output: a quote, {MAX_TOKENS - 3} digits, a quote, "
                                f"EOS = {MAX_TOKENS} tokens), no ignore_eos; both servers in their default "
                                f"structured-output configuration (a top-level string has no JSON whitespace)")

    if args.max_loras is None:
        results["notes"].append(f"--max-loras {SERVER_DEFAULT}: ours runs without --max-loras and --max-cpu-loras "
                                f"(it sizes its LoRA slots itself, from memory on CPU: its log gives the number); "
                                f"stock vLLM, which has no such sizing (its own default is 1 slot), runs with "
                                f"--max-loras {DEFAULT_MAX_LORAS} --max-cpu-loras {DEFAULT_MAX_LORAS}")

    for name in args.workloads:
        n = many_loras(name)
        if n:
            results["notes"].append(
                f"{name} workload: {n} rank-16 LoRAs round robin (lora-0..lora-{n - 1}), ours and stock vLLM "
                f"with {report.loras_flags(results)}"
                + (f" (no swapping: --max-loras >= {n})" if (args.max_loras or 0) >= n else ""))

    def save() -> None:
        (args.out / "results.json").write_text(json.dumps(results, indent=1))

    failed = []
    try:
        contenders = [CONTENDERS[name](assets, args.dtype, args.max_loras, args.max_cpu_loras)
                      for name in args.contenders]
        for contender in contenders:  # only this run's workloads (prepare() readies no others)
            contender.workloads = supported(contender.workloads, args.workloads)
        run = run_in_turn if args.rounds == 1 else run_interleaved
        run(contenders, args, all_workloads, results, save, failed)
    except KeyboardInterrupt:
        results["notes"].append("interrupted: partial results")
        failed.append("(interrupted)")
    finally:
        stop_all()
    results["finished"] = time.strftime("%Y-%m-%d %H:%M")
    save()
    print(report.render(results, args.out))
    print(f"\nwritten: {args.out}/results.md, results.json, throughput.png, ttft.png, logs/", flush=True)
    if failed:
        sys.exit(f"contenders failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
