"""Adapter versions in a row, as online RL publishes them: nothing may leak, no stale answer.

    .venv/bin/python -m loadtests.adapter_versions --versions 500 --out loadtests/results/versions

What TRL's AsyncGRPO does at every step (trl/experimental/async_grpo), `--versions` times: publish
the policy as `policy-vN` into the trainer's folder (a staging folder, then a rename), then
`POST /pause?mode=keep`, `/v1/load_lora_adapter`, `/resume`; generate with `policy-vN`; unload
the version that fell out of the staleness window (`--keep` versions stay loaded) and delete its
folder. Versions alternate between two different adapters (`--sources`), and every answer must be
the greedy answer of the adapter its version was published from, so that an answer from a stale
version (or stale engine weights, or a stale prefix cache) fails the run.

Verdict: every answer was its version's; the engine's own count of loaded LoRAs
(`vllm:num_cpu_loaded_lora_adapters`) never rose above its count before the run by more than
`--keep` + 1 versions + 2 references + 1 (an unload still under way), and fell back to it at the
end; the server's process tree's RSS after warm-up grew by less than `--rss-growth-mib`, with the
process that grew named. The engine evicts LoRAs itself past its cache size (`max_cpu_loras`),
which would hide a leak: the run refuses to judge the count when that size leaves no room above
the bound. The server is started on the bench model
(`--lora-roots` the trainer's folder), or attached with `--url` (+ `--pid` to sample its memory,
`--sources` then naming two adapter directories on disk).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import uuid
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from loadtests.bench.procs import free_port, install_cleanup, rss_by_role

PROMPT = "The quick brown fox"
MAX_TOKENS = 8


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m loadtests.adapter_versions",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--versions", type=int, default=500)
    p.add_argument("--keep", type=int, default=1, help="versions kept loaded besides the newest "
                   "(AsyncGRPO's max_staleness)")
    p.add_argument("--warmup", type=float, default=0.2, help="share of the versions before RSS counts")
    p.add_argument("--rss-growth-mib", type=float, default=32.0,
                   help="most RSS growth after warm-up that passes")
    p.add_argument("--sample-every", type=int, default=10, help="versions between samples")
    p.add_argument("--url", help="attach to this running server instead of starting one")
    p.add_argument("--pid", type=int, help="with --url: the server's pid, to sample its memory")
    p.add_argument("--trainer-dir", help="with --url: a folder the server may load from "
                   "(inside --adapters or a --lora-roots directory); versions are published there")
    p.add_argument("--sources", help="with --url: two adapter directories, comma-separated, whose "
                   "greedy answers differ")
    p.add_argument("--api-key", default=os.environ.get("LOADTEST_API_KEY"))
    p.add_argument("--assets", default="loadtests/results/assets",
                   help="bench model cache, shared with loadtests.bench (own server)")
    p.add_argument("--out", default="loadtests/results/versions")
    args = p.parse_args(argv)
    if args.url and not (args.trainer_dir and args.sources):
        p.error("--url needs --trainer-dir and --sources")
    return args


def publish(src: Path, folder: Path, name: str) -> Path:
    """As AsyncGRPO's save_lora_adapter: written under a hidden staging name, then renamed."""
    staging = folder / f".{name}.{uuid.uuid4().hex}.tmp"
    shutil.copytree(src, staging)
    target = folder / name
    os.rename(staging, target)
    return target


class Session:
    def __init__(self, url: str, api_key: str | None) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=url, headers=headers, timeout=120)

    def ok(self, method: str, path: str, **kwargs) -> httpx.Response:
        r = self.http.request(method, path, **kwargs)
        if r.status_code != 200:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text}")
        return r

    def load(self, name: str, path: Path) -> None:
        self.ok("POST", "/pause", params={"mode": "keep"})
        try:
            self.ok("POST", "/v1/load_lora_adapter",
                    json={"lora_name": name, "lora_path": str(path), "load_inplace": False})
        finally:
            self.ok("POST", "/resume")

    def unload(self, name: str) -> None:
        self.ok("POST", "/v1/unload_lora_adapter", json={"lora_name": name})

    def answer(self, model: str) -> list[int]:
        r = self.ok("POST", "/v1/completions", json={
            "model": model, "prompt": PROMPT, "max_tokens": MAX_TOKENS, "temperature": 0,
            "ignore_eos": True, "return_token_ids": True, "logprobs": 0,
            "seed": 2**63 - 1})  # AsyncGRPO sends a random 63-bit seed
        choice = r.json()["choices"][0]
        return choice["token_ids"]

    def lora_cache_size(self) -> int:
        info = self.ok("GET", "/server_info", params={"config_format": "json"}).json()
        return int(info["vllm_config"]["lora_config"]["max_cpu_loras"])

    def engine_loras(self) -> int:
        for family in text_string_to_metric_families(self.ok("GET", "/metrics").text):
            if family.name == "vllm:num_cpu_loaded_lora_adapters":
                return int(family.samples[0].value)
        raise RuntimeError("the server exports no vllm:num_cpu_loaded_lora_adapters")


def run(session: Session, sources: list[Path], trainer_dir: Path, versions: int, keep: int,
        pid: int | None, sample_every: int) -> dict:
    """The versions in a row; returns what was seen (answers checked, samples of memory)."""
    before, cache_size = session.engine_loras(), session.lora_cache_size()
    references = {}
    for i, src in enumerate(sources):
        name = f"reference-{i}-{uuid.uuid4().hex[:6]}"
        session.load(name, publish(src, trainer_dir, name))
        references[i] = session.answer(name)
    if references[0] == references[1]:
        raise RuntimeError("the two sources answer alike: a stale answer could not be told apart")
    stale, most_loras, samples, loaded = [], 0, [], []
    started = time.monotonic()
    for v in range(1, versions + 1):
        name = f"policy-v{v}"
        session.load(name, publish(sources[v % 2], trainer_dir, name))
        loaded.append(name)
        if session.answer(name) != references[v % 2]:
            stale.append(v)
        while len(loaded) > keep + 1:
            old = loaded.pop(0)
            session.unload(old)
            shutil.rmtree(trainer_dir / old)
        most_loras = max(most_loras, session.engine_loras())
        if v % sample_every == 0 or v == versions:
            rss = {role: b / 2**20 for role, b in rss_by_role(pid).items()} if pid else {}
            samples.append({"version": v, "seconds": time.monotonic() - started, "rss_mib": rss,
                            "engine_loras": session.engine_loras()})
    for old in [*loaded, *(n for n in os.listdir(trainer_dir) if n.startswith("reference-"))]:
        session.unload(old)
        shutil.rmtree(trainer_dir / old)
    seconds = time.monotonic() - started
    after = session.engine_loras()
    for _ in range(20):  # unloads are asynchronous: give the last ones a moment
        if after <= before:
            break
        time.sleep(0.1)
        after = session.engine_loras()
    return {"versions": versions, "stale": stale, "engine_loras_before": before,
            "most_engine_loras": most_loras, "engine_loras_after": after,
            "lora_cache_size": cache_size, "references": len(references), "seconds": seconds,
            "samples": samples}


def memory(samples: list[dict], warmup_version: float) -> dict:
    after = [s for s in samples if s["version"] >= warmup_version and s["rss_mib"]]
    if len(after) < 2:
        return {}
    first, last = after[0]["rss_mib"], after[-1]["rss_mib"]
    growth = {role: last.get(role, 0.0) - first.get(role, 0.0) for role in {*first, *last}}
    return {"after_warmup_mib": sum(first.values()), "end_mib": sum(last.values()),
            "growth_mib": sum(last.values()) - sum(first.values()),
            "by_role_growth_mib": growth, "grew_most": max(growth, key=growth.get)}


def judge(report: dict, keep: int, rss_growth_mib: float) -> dict[str, bool]:
    # Above the count before: the kept versions and the newest, the references, one unloading.
    bound = report["engine_loras_before"] + keep + 1 + report["references"] + 1
    checks = {
        "no stale answer": not report["stale"],
        "engine LoRAs bounded": report["most_engine_loras"] <= bound,
        "engine LoRAs back to their count before": report["engine_loras_after"] <= report["engine_loras_before"],
        # A cache no larger than the bound evicts on its own and would hide a leak.
        "engine's LoRA cache leaves room to see a leak": report["lora_cache_size"] > bound,
    }
    if report["memory"]:
        checks["memory flat"] = report["memory"]["growth_mib"] < rss_growth_mib
    return checks


def render(report: dict) -> str:
    lines = [f"# {report['versions']} adapter versions in a row", "",
             f"- {report['seconds']:.0f} s, {report['versions'] / report['seconds']:.1f} versions/s "
             "(publish, pause, load, resume, one greedy answer, unload)",
             f"- stale answers: {len(report['stale'])} {report['stale'][:10]}",
             f"- LoRAs the engine held: {report['engine_loras_before']} before, at most "
             f"{report['most_engine_loras']} during, {report['engine_loras_after']} after "
             f"(its cache holds {report['lora_cache_size']})"]
    m = report["memory"]
    if m:
        lines.append(f"- server tree RSS after warm-up {m['after_warmup_mib']:.0f} MiB, end "
                     f"{m['end_mib']:.0f} MiB, growth {m['growth_mib']:+.1f} MiB (most: {m['grew_most']})")
    lines += ["", *(f"- {'PASS' if ok else 'FAIL'}: {name}" for name, ok in report["checks"].items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    server = None
    if args.url:
        url, pid = args.url, args.pid
        trainer_dir = Path(args.trainer_dir).resolve()  # the server resolves relative paths elsewhere
        sources = [Path(s) for s in args.sources.split(",")]
    else:
        from loadtests.bench.assets import ensure_assets
        from loadtests.bench.ours import Ours

        install_cleanup()
        assets = ensure_assets(args.assets)
        trainer_dir = (out / "trainer").resolve()
        shutil.rmtree(trainer_dir, ignore_errors=True)
        server = Ours(assets).start(free_port(), out / "server.log", "--lora-roots", str(trainer_dir),
                                    adapters=assets.adapters)
        server.wait_ready()
        url, pid = server.url, server.proc.pid
        sources = [assets.lora_path(name) for name in assets.loras[:2]]
    trainer_dir.mkdir(parents=True, exist_ok=True)
    try:
        report = run(Session(url, args.api_key), sources, trainer_dir, args.versions, args.keep,
                     pid, args.sample_every)
    finally:
        if server is not None:
            server.stop()
    report["memory"] = memory(report["samples"], args.warmup * args.versions)
    report["checks"] = judge(report, args.keep, args.rss_growth_mib)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(render(report))
    print(render(report))
    return 0 if all(report["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
