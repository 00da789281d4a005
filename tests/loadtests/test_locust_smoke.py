"""A short real Locust run (headless, ~8 s, 4 users) against the session's server: no failures,
and every adapter of the mix shows up in the stats.

It caught, on the first run, vLLM's LoRA embedding wrapper killing the engine when a batch mixed
soft-prompt embeddings with a LoRA ("einsum(): subscript b has size N+V ... N"; server/in_engine/plugin.py
removes that wrapper): the health check below names that failure instead of 503s per request.
"""

from __future__ import annotations

import csv
import os

import httpx
import subprocess
import sys
from pathlib import Path

from tests.conftest import API_KEY

ROOT = Path(__file__).resolve().parents[2]
MIX = "base,lora-a,lora-b,prompt-a,lora-a+prompt-a"


def test_locust_headless_run_has_no_failures(server, tmp_path):
    locust = Path(sys.executable).with_name("locust")
    csv_prefix = tmp_path / "smoke"
    env = {**os.environ, "LOADTEST_API_KEY": API_KEY, "LOADTEST_ADAPTER_MIX": MIX,
           "LOADTEST_MAX_TOKENS": "8"}
    cmd = [str(locust), "-f", str(ROOT / "loadtests" / "locustfile.py"), "--headless",
           "-u", "4", "-r", "4", "-t", "8s", "--host", server.url, "--csv", str(csv_prefix),
           "--only-summary", "--stop-timeout", "10"]
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    with open(f"{csv_prefix}_stats.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["Name"] != "Aggregated"]
    health = httpx.get(server.url + "/health", timeout=10).status_code
    assert health == 200, f"the engine died under the mixed load (health {health}); see {server.log}"
    failures = {r["Name"]: r["Failure Count"] for r in rows if int(r["Failure Count"])}
    assert not failures, f"{failures}\n{run.stderr[-3000:]}"
    # Locust exits 1 when any request failed; anything else non-zero is a broken locustfile.
    assert run.returncode == 0, run.stderr[-3000:]
    requests = {r["Name"]: int(r["Request Count"]) for r in rows if r["Type"] == "POST"}
    for label in MIX.split(","):
        count = sum(n for name, n in requests.items() if name.endswith(f"[{label}]"))
        assert count > 0, f"no requests for {label}: {requests}"
    ttft = [r for r in rows if r["Type"] == "TTFT" and int(r["Request Count"])]
    assert ttft, "no time-to-first-token metrics recorded"
