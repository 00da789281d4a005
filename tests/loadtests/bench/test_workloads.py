"""The workloads' targets and names (pure: no assets needed, only names)."""

from __future__ import annotations

import pytest

from loadtests.bench.__main__ import parse_args
from loadtests.bench.assets import BenchAssets
from loadtests.bench.workloads import (
    MANY,
    WORKLOAD_NAMES,
    Target,
    family,
    is_workload,
    many_loras,
    most_loras,
    workloads,
)


def test_lora_48_cycles_over_48_distinct_loras(tmp_path):
    w = workloads(BenchAssets(tmp_path), ["lora-48"])["lora-48"]
    names = [w.target(i).lora for i in range(2 * 48)]
    assert many_loras("lora-48") == 48 and len(set(names)) == 48
    assert names[:48] == [f"lora-{i}" for i in range(48)] and names[48:] == names[:48]  # round robin
    assert not any(w.target(i).cold or w.target(i).soft_prompt for i in range(48)) and w.needs_lora


def test_lora_1000_is_a_workload_of_1000_distinct_loras(tmp_path):
    found = workloads(BenchAssets(tmp_path), ["base", "lora-1000", "lora-256"])
    w = found["lora-1000"]
    assert len(w.targets) == 1000 and len({t.lora for t in w.targets}) == 1000
    assert w.target(999) == Target("lora-999") and w.target(1000) == Target("lora-0")
    assert len(found["lora-256"].targets) == 256 and "lora-48" not in found
    assert most_loras(["lora-8", "lora-256", "lora-1000", "cold"]) == 1000 and most_loras(["lora-8"]) is None


@pytest.mark.parametrize("name", ["lora-9", "lora-48", "lora-256", "lora-1000"])
def test_lora_n_above_the_assets_loras_is_valid(name):
    assert is_workload(name) and family(name) == MANY and many_loras(name) == int(name[5:])


@pytest.mark.parametrize("name", ["lora-0", "lora-3", "lora-x", "lora-048", "lora-", MANY, "lora-8a"])
def test_other_lora_names_are_not_many_lora_workloads(name):
    assert many_loras(name) is None and not is_workload(name)


def test_fixed_names_are_workloads_of_their_own():
    for name in ("base", "lora-1", "lora-8", "soft", "json", "cold"):
        assert is_workload(name) and family(name) == name and many_loras(name) is None


def test_the_cli_takes_lora_n_and_refuses_other_names(capsys):
    args = parse_args(["--workloads", "lora-8,lora-256,lora-1000", "--max-loras", "default"])
    assert args.workloads == ["lora-8", "lora-256", "lora-1000"] and args.max_loras is None
    assert args.max_cpu_loras is None
    for bad in ("lora-3", "lora-x", "lora-N"):
        with pytest.raises(SystemExit):
            parse_args(["--workloads", f"lora-8,{bad}"])
        assert f"unknown workloads: {bad}" in capsys.readouterr().err


def test_the_cli_max_loras_values():
    assert parse_args(["--max-loras", "auto"]).max_loras is None
    args = parse_args(["--max-loras", "4"])
    assert (args.max_loras, args.max_cpu_loras) == (4, 4)
    args = parse_args(["--max-loras", "4", "--max-cpu-loras", "48"])
    assert (args.max_loras, args.max_cpu_loras) == (4, 48)
    assert (parse_args([]).max_loras, parse_args([]).max_cpu_loras) == (8, 8)
    for bad in (["--max-loras", "many"], ["--max-loras", "0"], ["--max-loras", "8", "--max-cpu-loras", "4"],
                ["--max-loras", "default", "--max-cpu-loras", "48"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


def test_cold_targets_are_copies_of_lora_0_made_cold(tmp_path):
    w = workloads(BenchAssets(tmp_path))["cold"]
    assert all(w.target(i) == Target("lora-0", cold=True) for i in range(5))
    assert {MANY, "cold"} <= set(WORKLOAD_NAMES)
    assert tuple(workloads(BenchAssets(tmp_path))) == tuple(n for n in WORKLOAD_NAMES if n != MANY)
