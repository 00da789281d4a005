"""Adapter versions in a row as online RL makes them (publish, pause, load, resume, generate,
unload), briefly, against the session's server: every answer is its own version's, the engine
lets the old versions go and the server's memory stays flat. The long run (500 versions on the
bench model) is in loadtests/RESULTS.md."""

from __future__ import annotations

import json

from loadtests import adapter_versions
from tests.conftest import API_KEY


def test_versions_in_a_row_leave_nothing_behind_and_are_never_stale(server, tiny, tmp_path):
    out = tmp_path / "versions"
    code = adapter_versions.main([
        "--url", server.url, "--pid", str(server.proc.pid), "--api-key", API_KEY,
        "--trainer-dir", str(server.trainer_dir), "--sources", f"{tiny['lora-a']},{tiny['lora-b']}",
        "--versions", "60", "--keep", "1", "--rss-growth-mib", "64", "--out", str(out)])
    report = json.loads((out / "report.json").read_text())
    assert code == 0, (out / "report.md").read_text()
    assert report["stale"] == [] and report["references"] == 2
    # What the checks stand on: the engine held the kept versions and the references.
    assert report["most_engine_loras"] >= report["engine_loras_before"] + 3
    assert report["memory"]["by_role_growth_mib"].keys() >= {"server", "engine core"}
    assert not any(server.trainer_dir.iterdir())  # every version unloaded and deleted


def test_stale_answers_leaks_and_a_cache_too_small_to_tell_fail_the_run():
    good = {"stale": [], "engine_loras_before": 2, "most_engine_loras": 6, "engine_loras_after": 2,
            "lora_cache_size": 16, "references": 2, "memory": {"growth_mib": 1.0}}
    assert all(adapter_versions.judge(good, keep=1, rss_growth_mib=32).values())
    for change, failed in (({"stale": [7]}, "no stale answer"),
                           ({"most_engine_loras": 9}, "engine LoRAs bounded"),
                           ({"engine_loras_after": 3}, "engine LoRAs back to their count before"),
                           ({"lora_cache_size": 7}, "engine's LoRA cache leaves room to see a leak"),
                           ({"memory": {"growth_mib": 40.0}}, "memory flat")):
        checks = adapter_versions.judge({**good, **change}, keep=1, rss_growth_mib=32)
        assert [name for name, ok in checks.items() if not ok] == [failed]
