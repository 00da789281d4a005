"""Start-up benchmark: cold and warm starts of this server and of stock vLLM's, side by side.

    .venv/bin/python -m loadtests.startup [--models demo,bench] [--servers ours,stock-vllm] [--rounds 3] \
        [--out loadtests/results/startup]

For each model (`demo`: the `make serve` model in .demo/base, float32; `bench`: the benchmark's
model, bfloat16) and each server, with the same engine options (LoRA on, 1 GiB KV cache, 1024
tokens of context), every round starts the server twice on a fresh, empty cache folder:

- cold: nothing cached (vLLM's compile cache, Inductor's, our LoRA kernel: all pointed at the
  empty folder through VLLM_CACHE_ROOT, TORCHINDUCTOR_CACHE_DIR, ADAPTER_SERVE_KERNEL_CACHE);
- warm: the same folder, as the first start left it (a restart, a second replica on the node).

`ours-eager` is ours without compilation (`--engine-arg enforce_eager=true`): stock vLLM does not
compile a LoRA-enabled model on CPU, ours does (the base model's throughput), at the price of
the compilation on a cold start. `ours-spawned` is ours without the prestarted engine core
(`--no-prestart-engine`): its imports follow the server's instead of running beside them.

Measured: seconds from the process's start to `/health` 200 ("ready"), then the latency of a
first request (8 greedy tokens of the base model); for our server also its own phase breakdown
(`server_startup_seconds`, see server/startup/). Medians over the rounds go to report.md and
report.json in --out. The operating system's page cache stays warm throughout: a machine's
first start after boot also reads the files from disk.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from loadtests.bench.assets import ensure_assets
from loadtests.bench.procs import ServerProcess, free_port, install_cleanup
from server.startup.breakdown import ASIDE, PATH

PYTHON = sys.executable
SERVED_NAME = "base"
# The same engine options on both servers (ours enables LoRA always).
KV_CACHE_GIB = 1
MAX_MODEL_LEN = 1024
CACHE_ENVS = ("VLLM_CACHE_ROOT", "TORCHINDUCTOR_CACHE_DIR", "ADAPTER_SERVE_KERNEL_CACHE")


@dataclass(frozen=True)
class Model:
    name: str
    path: Path
    adapters: Path
    dtype: str


def server_command(server: str, model: Model, port: int) -> list[str]:
    if server == "ours-spawned":
        # The engine core's interpreter spawned by vLLM once the server has imported its own.
        return [*server_command("ours", model, port), "--no-prestart-engine"]
    if server == "ours-eager":
        # What stock vLLM does with LoRA on CPU: no compilation (ours compiles, for throughput).
        return [*server_command("ours", model, port), "--engine-arg", "enforce_eager=true"]
    if server == "ours":
        return [PYTHON, "-m", "server", "--model", str(model.path), "--adapters", str(model.adapters),
                "--served-model-name", SERVED_NAME, "--port", str(port), "--dtype", model.dtype,
                "--kv-cache-gib", str(KV_CACHE_GIB), "--max-model-len", str(MAX_MODEL_LEN),
                "--max-loras", "8", "--max-lora-rank", "16", "--log-level", "warning"]
    if server == "stock-vllm":
        return [PYTHON, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model.path),
                "--served-model-name", SERVED_NAME, "--port", str(port), "--dtype", model.dtype,
                "--kv-cache-memory-bytes", str(KV_CACHE_GIB * 2**30), "--max-model-len", str(MAX_MODEL_LEN),
                "--enable-lora", "--max-loras", "8", "--max-lora-rank", "16", "--enable-prompt-embeds",
                "--disable-uvicorn-access-log", "--uvicorn-log-level", "warning"]
    raise ValueError(f"unknown server {server!r}")


def cache_env(folder: Path) -> dict[str, str]:
    """Every cache a start fills, inside `folder` (empty: a cold start)."""
    return {name: str(folder / name.lower()) for name in CACHE_ENVS}


def first_request(url: str) -> float:
    start = time.monotonic()
    r = httpx.post(url + "/v1/completions", timeout=300, json={
        "model": SERVED_NAME, "prompt": "Hello there", "max_tokens": 8, "temperature": 0})
    r.raise_for_status()
    return time.monotonic() - start


def startup_phases(url: str) -> dict[str, float]:
    """Our server's own breakdown (empty for a server without it)."""
    text = httpx.get(url + "/metrics", timeout=30).text
    return {s.labels["phase"]: round(s.value, 2) for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == "server_startup_seconds"}


def start_once(server: str, model: Model, caches: Path, log: Path) -> dict:
    port = free_port()
    proc = ServerProcess(server, server_command(server, model, port), log, port, env=cache_env(caches))
    try:
        ready = proc.wait_ready()
        return {"ready_s": round(ready, 2), "first_request_s": round(first_request(proc.url), 3),
                "phases": startup_phases(proc.url) if server.startswith("ours") else {}}
    finally:
        proc.stop()


def median_of(runs: list[dict], key: str) -> float:
    return round(statistics.median(r[key] for r in runs), 2)


def phase_order(phase: str) -> int:
    """The breakdown's order: the critical path, the figures shown inside it, other, total."""
    order = [label for label, _, _ in PATH] + [label for label, *_ in ASIDE] + ["other", "total"]
    return order.index(phase) if phase in order else len(order)


def summarize(runs: list[dict]) -> dict:
    """Medians of one (model, server, kind)'s rounds, phases included (in the breakdown's order)."""
    phases = sorted({p for r in runs for p in r["phases"]}, key=phase_order)
    return {"ready_s": median_of(runs, "ready_s"), "first_request_s": median_of(runs, "first_request_s"),
            "phases": {p: round(statistics.median(r["phases"].get(p, 0.0) for r in runs), 2) for p in phases},
            "rounds": len(runs)}


def render(results: dict) -> str:
    rows = results["summary"]
    lines = [f"# Start-up ({results['date']}, {results['machine']})", "", f"`{results['command']}`", "",
             "| model | server | cold: ready s | warm: ready s | first request cold / warm ms |",
             "| --- | --- | --- | --- | --- |"]
    for key, kinds in rows.items():
        model, server = key.split("/")
        cold, warm = kinds["cold"], kinds["warm"]
        lines.append(f"| {model} | {server} | {cold['ready_s']:.1f} | {warm['ready_s']:.1f} | "
                     f"{1000 * cold['first_request_s']:.0f} / {1000 * warm['first_request_s']:.0f} |")
    for key, kinds in rows.items():
        if kinds["cold"]["phases"]:
            lines += ["", f"Phases of {key} (medians, seconds; server/startup/breakdown.py):", "",
                      "| phase | cold | warm |", "| --- | --- | --- |"]
            for phase in kinds["cold"]["phases"]:
                lines.append(f"| {phase} | {kinds['cold']['phases'][phase]:.2f} | "
                             f"{kinds['warm']['phases'].get(phase, 0.0):.2f} |")
    return "\n".join(lines) + "\n"


def models(names: list[str]) -> list[Model]:
    out = []
    for name in names:
        if name == "demo":
            demo = Path(".demo/base")
            if not (demo / "config.json").exists():
                raise SystemExit("no demo model in .demo/base: run `make demo` first")
            out.append(Model("demo", demo, Path("adapters"), "float32"))
        elif name == "bench":
            assets = ensure_assets("loadtests/results/assets")
            out.append(Model("bench", assets.base, assets.adapters, "bfloat16"))
        else:
            raise SystemExit(f"unknown model {name!r} (demo, bench)")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtests.startup", description=__doc__.split("\n")[0])
    p.add_argument("--models", default="demo,bench", help="comma-separated: demo, bench")
    p.add_argument("--servers", default="ours,ours-eager,stock-vllm",
                   help="comma-separated: ours, ours-eager (no compilation, as stock vLLM with LoRA on CPU), "
                        "ours-spawned (no prestarted engine core), stock-vllm")
    p.add_argument("--rounds", type=int, default=3, help="cold + warm pairs per model and server")
    p.add_argument("--out", type=Path, default=Path("loadtests/results/startup"))
    args = p.parse_args(argv)
    install_cleanup()
    args.out.mkdir(parents=True, exist_ok=True)
    servers = args.servers.split(",")
    results = {"command": " ".join([".venv/bin/python -m loadtests.startup", *(argv or sys.argv[1:])]),
               "date": time.strftime("%Y-%m-%d %H:%M"),
               "machine": f"{os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.1f}",
               "runs": {}, "summary": {}}
    for model in models(args.models.split(",")):
        for round_ in range(args.rounds):
            # Servers alternate within a round, so a slow phase of the machine hits both alike.
            for server in servers:
                key = f"{model.name}/{server}"
                with tempfile.TemporaryDirectory(prefix="startup-caches-") as caches:
                    for kind in ("cold", "warm"):
                        run = start_once(server, model, Path(caches), args.out / f"{key.replace('/', '-')}"
                                         f"-{round_}-{kind}.log")
                        results["runs"].setdefault(key, {}).setdefault(kind, []).append(run)
                        print(f"{key:20s} round {round_ + 1} {kind}: ready {run['ready_s']:.1f} s, "
                              f"first request {1000 * run['first_request_s']:.0f} ms", flush=True)
                results["summary"][key] = {kind: summarize(runs) for kind, runs in results["runs"][key].items()}
                (args.out / "report.json").write_text(json.dumps(results, indent=1))
    (args.out / "report.md").write_text(render(results))
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
