"""Soak: overload with adapter churn for a bounded time; nothing but 429s may fail, no request
may be lost, and the server's memory must level off.

    .venv/bin/python -m loadtests.soak --duration 600 --out loadtests/results/soak

Against its own server (the bench model and adapters, `--max-queued-requests` set):
1. Saturation: a closed-loop Locust run (`--saturation-users`, no think time to speak of)
   measures the requests/s the server sustains.
2. Soak: Locust offers twice that rate, open-loop (`--user-rate` per user), for `--duration`
   seconds, while a churn thread publishes a new adapter, republishes one the load is using
   (`hot`) and deletes an older one every `--churn-every` seconds, probing each change.
3. Verdict: every failure Locust saw is a 429; no request was lost: the server's own count
   (`server_finished_requests_total` by status) has exactly as many answered as the clients got 200s
   (streams included only when they ended with `[DONE]`), as many refused as they got 429s,
   and none aborted, timed out or failed; every churn probe got what it should (200 after a
   publish, 404 after a delete); the server is healthy; the whole process tree's RSS after
   warm-up grows by less than `--rss-growth-mib`, and by less than `--rss-per-1k-requests-mib`
   per 1,000 requests answered (a verdict that holds at any machine's speed); the report names
   the process (API server, engine core, worker) that grew.

With `--url`, `--adapters` and `--base` it attaches to a running server instead (the test suite
does this, briefly, with its session server), and with `--pid` samples that server's memory.
`report.md` and `report.json` in `--out` hold the figures; the exit code is 0 when every check
passed.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from adapter_formats.manifest import base_model_identity
from loadtests.bench.assets import ensure_assets
from loadtests.bench.ours import Ours
from loadtests.bench.procs import ROOT, ServerProcess, free_port, install_cleanup, rss_by_role
from training.publish import publish_adapter

LOCUST = str(Path(sys.executable).with_name("locust"))
HOT = "hot"  # the adapter the load uses while the churn thread keeps republishing it
MIN_REQUESTS_PER_VERDICT = 1000
"""Requests answered after warm-up below which memory is not judged per request: a few dozen
(the suite's short run) weigh first uses (a churned adapter's first load) as if they were growth."""


@dataclass
class Churn:
    """What the churn thread did and what went wrong."""

    cycles: int = 0
    published: int = 0
    replaced: int = 0
    deleted: int = 0
    answers: dict[int, int] = field(default_factory=dict)  # probe answers by HTTP status
    unexpected: list[str] = field(default_factory=list)


class Churner(threading.Thread):
    """Every `every` seconds: publish `churn-K` and probe it (200), republish `hot`, delete
    `churn-(K-1)` and probe it (404). Sources cycle through `sources` (adapter directories)."""

    def __init__(self, url: str, headers: dict, adapters: Path, sources: list[Path], base: str,
                 every: float) -> None:
        super().__init__(daemon=True)
        self.url, self.headers, self.adapters, self.sources = url, headers, adapters, sources
        self.manifest = {"method": "lora", "base_model": {"identity": base_model_identity(base)}}
        self.every, self.stop, self.churn = every, threading.Event(), Churn()

    def publish(self, k: int, name: str) -> None:
        publish_adapter(self.sources[k % len(self.sources)], name, self.adapters, self.manifest)

    def probe(self, name: str, expected: int) -> None:
        body = {"model": name, "prompt": "churn probe", "max_tokens": 2}
        for _ in range(30):  # a 429 means the queue is full: the probe waits its turn
            status = httpx.post(self.url + "/v1/completions", json=body, headers=self.headers,
                                timeout=120).status_code
            self.churn.answers[status] = self.churn.answers.get(status, 0) + 1
            if status != 429:
                break
            time.sleep(1)
        if status != expected:
            self.churn.unexpected.append(f"cycle {self.churn.cycles}: {name} answered {status}, "
                                         f"expected {expected}")

    def cleanup(self) -> None:
        """Remove what the churn published (an attached server's folder is someone else's)."""
        for name in [HOT, f"churn-{self.churn.cycles}"]:
            shutil.rmtree(self.adapters / name, ignore_errors=True)

    def run(self) -> None:
        k = 0
        while not self.stop.wait(self.every):
            k += 1
            self.churn.cycles = k
            try:
                self.publish(k, f"churn-{k}")
                self.churn.published += 1
                self.probe(f"churn-{k}", 200)
                self.publish(k + 1, HOT)
                self.churn.replaced += 1
                if k > 1:
                    # As an operator would: out of sight in one rename, then removed.
                    gone = self.adapters / f".churn-{k - 1}.deleted"
                    os.rename(self.adapters / f"churn-{k - 1}", gone)
                    shutil.rmtree(gone)
                    self.churn.deleted += 1
                    self.probe(f"churn-{k - 1}", 404)
            except Exception as exc:  # noqa: BLE001 - recorded as a failed check, not a crash
                self.churn.unexpected.append(f"cycle {k}: {type(exc).__name__}: {exc}")


def counted_requests(url: str) -> Counter:
    """Generation requests the server finished, by status (ok, rejected, aborted, ...)."""
    text = httpx.get(url + "/metrics", timeout=30).text
    counts = Counter()
    for family in text_string_to_metric_families(text):
        if family.name == "server_finished_requests":  # never dropped, unlike per-adapter series
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    counts[sample.labels["status"]] += int(sample.value)
    return counts


def run_locust(url: str, mix: str, users: int, seconds: int, prefix: Path, api_key: str | None,
               user_rate: float = 0.0, max_tokens: int = 32) -> dict:
    """A headless Locust run: its totals and failures from its summary, and (`server`) the
    server's count of the generation requests it finished meanwhile, by status."""
    summary = Path(f"{prefix}.json")
    env = {**os.environ, "LOADTEST_ADAPTER_MIX": mix, "LOADTEST_MAX_TOKENS": str(max_tokens),
           "LOADTEST_USER_RATE": str(user_rate), "LOADTEST_SUMMARY_JSON": str(summary)}
    if api_key:
        env["LOADTEST_API_KEY"] = api_key
    cmd = [LOCUST, "-f", str(ROOT / "loadtests" / "locustfile.py"), "--headless", "-u", str(users),
           "-r", str(max(1, users // 2)), "-t", f"{seconds}s", "--host", url, "--csv", str(prefix),
           "--only-summary", "--stop-timeout", "120"]
    before = counted_requests(url)
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=seconds + 300)
    after = counted_requests(url)
    if not summary.exists():
        raise RuntimeError(f"Locust wrote no summary (exit {run.returncode}):\n{run.stderr[-3000:]}")
    return {**locust_totals(summary, seconds),
            "server": {status: after[status] - before[status] for status in after
                       if after[status] != before[status]}}


def locust_totals(summary: Path, seconds: float) -> dict:
    """Requests sent, answered, refused with 429, and other failures, from --summary-json."""
    totals = json.loads(summary.read_text())
    rows = [r for r in totals["requests"] if r["method"] == "POST"]
    # Locust words a failure as `CatchResponseError('HTTP 429: ...')`.
    failures = [(e["error"], e["occurrences"]) for e in totals["errors"]]
    sent = sum(r["num_requests"] for r in rows)
    failed = sum(r["num_failures"] for r in rows)
    rejected = sum(n for error, n in failures if "HTTP 429:" in error)
    return {"sent": sent, "ok": sent - failed, "rejected": rejected,
            "other_failures": [(error, n) for error, n in failures if "HTTP 429:" not in error],
            "ok_per_s": (sent - failed) / seconds}


class RSSSampler(threading.Thread):
    """Every `every` seconds: (seconds, requests the server has answered, {role: MiB}) for the
    process tree under `pid` (roles: loadtests.bench.procs.role), so that memory can be judged
    per request served, whatever the machine's speed, and the process that grew named."""

    def __init__(self, pid: int | None, url: str, every: float = 2.0) -> None:
        super().__init__(daemon=True)
        self.pid, self.url, self.every, self.stop, self.samples = pid, url, every, threading.Event(), []

    def run(self) -> None:
        start = time.monotonic()
        while self.pid is not None and not self.stop.wait(self.every):
            rss = {name: b / 2**20 for name, b in rss_by_role(self.pid).items()}
            self.samples.append((time.monotonic() - start, counted_requests(self.url)["ok"], rss))


def _slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (0 when xs do not vary)."""
    x0, y0 = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - x0) ** 2 for x in xs)
    return sum((x - x0) * (y - y0) for x, y in zip(xs, ys)) / spread if spread else 0.0


def rss_figures(samples: list[tuple[float, int, dict[str, float]]], warmup: float) -> dict:
    """After warm-up: the tree's RSS then, at the end, its peak, growth, slope per minute and per
    1,000 requests answered (least squares), and each process role's growth."""
    after = [(t, served, rss) for t, served, rss in samples if t >= warmup]
    if len(after) < 2:
        return {}
    ts, served = [t for t, _, _ in after], [n for _, n, _ in after]
    totals = [sum(rss.values()) for _, _, rss in after]
    roles = sorted({name for _, _, rss in after for name in rss})
    by_role = {name: {"after_warmup_mib": after[0][2].get(name, 0.0), "end_mib": after[-1][2].get(name, 0.0)}
               for name in roles}
    for figures in by_role.values():
        figures["growth_mib"] = figures["end_mib"] - figures["after_warmup_mib"]
    return {"after_warmup_mib": totals[0], "end_mib": totals[-1], "peak_mib": max(totals),
            "growth_mib": totals[-1] - totals[0], "slope_mib_per_min": _slope(ts, totals) * 60,
            "requests_after_warmup": served[-1] - served[0],
            "mib_per_1k_requests": _slope(served, totals) * 1000,
            "by_role": by_role, "grew_most": max(roles, key=lambda name: by_role[name]["growth_mib"])}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m loadtests.soak", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=int, default=600, help="seconds of overload")
    p.add_argument("--saturation-seconds", type=int, default=60)
    p.add_argument("--saturation-users", type=int, default=32)
    p.add_argument("--overload", type=float, default=2.0, help="offered rate / saturation rate")
    p.add_argument("--users", type=int, default=128, help="Locust users during the soak")
    p.add_argument("--max-queued-requests", type=int, default=32,
                   help="the server's queue limit (own server only)")
    p.add_argument("--max-num-seqs", type=int, default=16,
                   help="the server's running batch (own server only): with the queue limit, "
                        "fewer than --users, so the overload meets back-pressure")
    p.add_argument("--churn-every", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=0.2, help="share of the soak before RSS counts")
    p.add_argument("--rss-growth-mib", type=float, default=64.0,
                   help="most RSS growth after warm-up that passes")
    p.add_argument("--rss-per-1k-requests-mib", type=float, default=1.0,
                   help="most RSS growth per 1,000 requests answered after warm-up that passes (the "
                        "verdict that does not depend on the machine's speed)")
    p.add_argument("--pid", type=int, help="with --url: the attached server's pid, to sample its memory")
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--mix", default="base:2,lora-0,lora-1,lora-2,lora-3,soft-0,lora-0+soft-0,hot")
    p.add_argument("--sources", default="lora-4,lora-5,lora-6,lora-7",
                   help="adapters (in the adapters directory) copied by the churn")
    p.add_argument("--server-args", default="", help="more flags for the own server, as one string "
                   "(e.g. \"--no-fast-lora-ops --engine-arg enforce_eager=true\")")
    p.add_argument("--url", help="attach to this running server instead of starting one")
    p.add_argument("--adapters", help="the attached server's adapters directory")
    p.add_argument("--base", help="the attached server's base model directory")
    p.add_argument("--api-key", default=os.environ.get("LOADTEST_API_KEY"))
    p.add_argument("--assets", default="loadtests/results/assets",
                   help="bench model cache, shared with loadtests.bench (own server)")
    p.add_argument("--out", default="loadtests/results/soak")
    args = p.parse_args(argv)
    if args.url and not (args.adapters and args.base):
        p.error("--url needs --adapters and --base")
    return args


def start_server(args, out: Path) -> tuple[ServerProcess, Path, Path]:
    """Our server on the bench model, serving a copy of the bench adapters (the churn edits it)."""
    assets = ensure_assets(args.assets)
    adapters = out / "adapters"
    shutil.rmtree(adapters, ignore_errors=True)
    shutil.copytree(assets.adapters, adapters)
    contender = Ours(assets)
    server = contender.start(free_port(), out / "server.log", "--max-queued-requests",
                             str(args.max_queued_requests), "--max-num-seqs",
                             str(args.max_num_seqs), *shlex.split(args.server_args), adapters=adapters)
    server.wait_ready()
    return server, adapters, assets.base


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    server = None
    if args.url:
        url, adapters, base = args.url, Path(args.adapters), Path(args.base)
    else:
        install_cleanup()
        server, adapters, base = start_server(args, out)
        url = server.url
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    churner = Churner(url, headers, adapters, [adapters / s for s in args.sources.split(",")],
                      str(base), args.churn_every)
    churner.publish(0, HOT)
    try:
        saturation = run_locust(url, args.mix, args.saturation_users, args.saturation_seconds,
                                out / "saturation", args.api_key, max_tokens=args.max_tokens)
        rate = args.overload * saturation["ok_per_s"]
        print(f"saturation: {saturation['ok_per_s']:.1f} requests/s; offering {rate:.1f}/s",
              flush=True)
        sampler = RSSSampler(server.proc.pid if server is not None else args.pid, url)
        churner.start()
        sampler.start()
        soak = run_locust(url, args.mix, args.users, args.duration, out / "soak", args.api_key,
                          user_rate=rate / args.users, max_tokens=args.max_tokens)
        churner.stop.set()
        churner.join(timeout=300)
        sampler.stop.set()
        healthy = httpx.get(url + "/health", timeout=10).status_code == 200
    finally:
        if server is not None:
            server.stop()
        else:
            churner.cleanup()
    report = {"args": vars(args), "saturation": saturation, "soak": soak,
              "offered_per_s": rate, "churn": asdict(churner.churn), "healthy": healthy,
              "rss": rss_figures(sampler.samples, args.warmup * args.duration),
              "rss_samples": sampler.samples}
    checks = judge(report)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(render(report))
    print(render(report))
    return 0 if all(checks.values()) else 1


def judge(r: dict) -> dict[str, bool]:
    """The checks, from a report's figures (sets each phase's `clients` count and `checks`)."""
    saturation, soak, args = r["saturation"], r["soak"], r["args"]
    probes = {int(status): n for status, n in r["churn"]["answers"].items()}
    # The churn probes' 404s never reach generation, so the server does not count them there.
    soak["clients"] = {"ok": soak["ok"] + probes.get(200, 0),
                       "rejected": soak["rejected"] + probes.get(429, 0)}
    saturation["clients"] = {"ok": saturation["ok"], "rejected": saturation["rejected"]}
    checks = {
        "only 429s failed": not soak["other_failures"] and not saturation["other_failures"],
        "no request lost (server's count by status = clients')": all(
            phase["server"] == {k: v for k, v in phase["clients"].items() if v}
            for phase in (saturation, soak)),
        "every churn probe as expected": not r["churn"]["unexpected"],
        "healthy afterwards": r["healthy"],
    }
    if r["rss"]:
        checks[f"RSS growth after warm-up < {args['rss_growth_mib']:.0f} MiB"] = (
            r["rss"]["growth_mib"] < args["rss_growth_mib"])
        if r["rss"]["requests_after_warmup"] >= MIN_REQUESTS_PER_VERDICT:
            checks[f"RSS growth < {args['rss_per_1k_requests_mib']:g} MiB per 1,000 requests answered"] = (
                r["rss"]["mib_per_1k_requests"] < args["rss_per_1k_requests_mib"])
    r["checks"] = checks
    return checks


def render(r: dict) -> str:
    s, c, rss = r["soak"], r["churn"], r["rss"]
    lines = [
        f"# Soak: {r['args']['duration']} s at {r['args']['overload']:.1f}x saturation",
        "",
        f"- Saturation (closed loop, {r['args']['saturation_users']} users): "
        f"{r['saturation']['ok_per_s']:.2f} requests/s; offered {r['offered_per_s']:.2f}/s "
        f"from {r['args']['users']} users",
        f"- Soak: {s['sent']} requests ({s['sent'] / r['args']['duration']:.2f}/s), {s['ok']} answered 200 ({s['ok_per_s']:.2f}/s), "
        f"{s['rejected']} refused with 429, other failures: {s['other_failures'] or 'none'}",
        f"- Finished requests by status, server's count / clients': saturation "
        f"{r['saturation']['server']} / {r['saturation']['clients']}, soak {s['server']} / "
        f"{s['clients']} (Locust plus churn probes, whose answers were {c['answers']})",
        f"- Churn: {c['cycles']} cycles, {c['published']} published, {c['replaced']} replacements "
        f"of `{HOT}` under load, {c['deleted']} deleted; unexpected: {c['unexpected'] or 'none'}",
    ]
    if rss:
        lines.append(f"- Server tree RSS: {rss['after_warmup_mib']:.0f} MiB after warm-up, "
                     f"{rss['end_mib']:.0f} MiB at the end (peak {rss['peak_mib']:.0f}), growth "
                     f"{rss['growth_mib']:+.1f} MiB, slope {rss['slope_mib_per_min']:+.2f} MiB/min, "
                     f"{rss['mib_per_1k_requests']:+.2f} MiB per 1,000 of the {rss['requests_after_warmup']} "
                     f"requests answered after warm-up")
        if rss["requests_after_warmup"] < MIN_REQUESTS_PER_VERDICT:
            lines.append(f"- Memory per request not judged: {rss['requests_after_warmup']} requests answered "
                         f"after warm-up, fewer than {MIN_REQUESTS_PER_VERDICT}")
        lines.append("- By process: " + ", ".join(
            f"{name} {f['after_warmup_mib']:.0f} -> {f['end_mib']:.0f} MiB ({f['growth_mib']:+.1f})"
            for name, f in rss["by_role"].items()) + f"; grew most: {rss['grew_most']}")
    lines += ["", "| check | result |", "| --- | --- |"]
    lines += [f"| {name} | {'PASS' if ok else 'FAIL'} |" for name, ok in r["checks"].items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
