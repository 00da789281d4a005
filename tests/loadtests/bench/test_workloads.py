"""The workloads' targets (pure: no assets needed, only names)."""

from __future__ import annotations

from loadtests.bench.assets import BenchAssets
from loadtests.bench.workloads import MANY_LORAS, WORKLOAD_NAMES, Target, workloads


def test_lora_48_cycles_over_48_distinct_loras(tmp_path):
    w = workloads(BenchAssets(tmp_path))["lora-48"]
    names = [w.target(i).lora for i in range(2 * MANY_LORAS)]
    assert MANY_LORAS == 48 and len(set(names)) == 48
    assert names[:48] == [f"lora-{i}" for i in range(48)] and names[48:] == names[:48]  # round robin
    assert not any(w.target(i).cold or w.target(i).soft_prompt for i in range(48)) and w.needs_lora


def test_cold_targets_are_copies_of_lora_0_made_cold(tmp_path):
    w = workloads(BenchAssets(tmp_path))["cold"]
    assert all(w.target(i) == Target("lora-0", cold=True) for i in range(5))
    assert {"lora-48", "cold"} <= set(WORKLOAD_NAMES) and tuple(workloads(BenchAssets(tmp_path))) == WORKLOAD_NAMES
