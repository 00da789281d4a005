"""Our contender: command line flags, the writable served folder, cold requests (no server)."""

from __future__ import annotations

import asyncio

import pytest

from loadtests.bench.assets import BenchAssets
from loadtests.bench.load import Prelude
from loadtests.bench.ours import Ours, OursMultiprocess, OursSpawned
from loadtests.bench.workloads import Target, supported
from tests.loadtests.bench.test_contender import _fake_adapter


def _flag(cmd, name):
    return cmd[cmd.index(name) + 1]


@pytest.mark.parametrize("cls", [Ours, OursMultiprocess, OursSpawned])
def test_command_has_the_max_loras_values(tmp_path, cls):
    cmd = cls(BenchAssets(tmp_path), "float32", 4).command(8000)
    assert _flag(cmd, "--max-loras") == "4" and _flag(cmd, "--max-cpu-loras") == "4"
    cmd = cls(BenchAssets(tmp_path), "float32", 4, 12).command(8000)
    assert _flag(cmd, "--max-loras") == "4" and _flag(cmd, "--max-cpu-loras") == "12"
    default = Ours(BenchAssets(tmp_path)).command(8000)
    assert _flag(default, "--max-loras") == "8" and _flag(default, "--max-cpu-loras") == "8"
    assert cls(BenchAssets(tmp_path)).command(8000) == [*default, *cls.flags]


@pytest.mark.parametrize("cls", [Ours, OursMultiprocess, OursSpawned])
def test_server_defaults_pass_no_lora_counts(tmp_path, cls):
    """--max-loras default: the server sizes its LoRA slots itself, so neither flag is given."""
    cmd = cls(BenchAssets(tmp_path), "float32", None).command(8000)
    assert "--max-loras" not in cmd and "--max-cpu-loras" not in cmd and _flag(cmd, "--max-lora-rank") == "16"
    assert cmd == [*Ours(BenchAssets(tmp_path), "float32", None).command(8000), *cls.flags]


def test_the_run_narrows_to_its_lora_n_names_and_serves_the_largest(tmp_path):
    assets = BenchAssets(tmp_path / "assets")
    for i in range(8):
        _fake_adapter(assets.adapters / f"lora-{i}")
    _fake_adapter(assets.adapters / "soft-0")
    for i in range(8, 20):
        _fake_adapter(assets.lora_path(f"lora-{i}"))
    ours = Ours(assets)
    assert ours.loras() == assets.loras  # no lora-N: the assets' own
    ours.workloads = supported(Ours.workloads, ["lora-8", "lora-12", "lora-20", "cold"])
    assert ours.workloads == ("lora-8", "lora-12", "lora-20", "cold")
    assert ours.loras() == [f"lora-{i}" for i in range(20)]
    try:
        served = ours.writable_adapters()
        assert {p.name for p in served.iterdir()} == {*ours.loras(), "soft-0"}
    finally:
        ours.cleanup()


def test_cold_request_publishes_a_new_adapter_into_the_served_copy(tmp_path):
    assets = BenchAssets(tmp_path / "assets")
    for name in ("lora-0", "lora-1", "soft-0"):
        _fake_adapter(assets.adapters / name)
    for i in range(8, 48):
        _fake_adapter(assets.lora_path(f"lora-{i}"))
    ours = Ours(assets)
    ours.workloads = ("lora-48", "cold")  # as the harness narrows it (workloads.supported)
    ours.ignore_eos = True
    served = ours.writable_adapters()
    ours.served = served
    try:
        assert served != assets.adapters and not served.is_relative_to(assets.root)
        assert {"lora-0", "soft-0", "lora-8", "lora-47"} <= {p.name for p in served.iterdir()}
        assert not any(p.is_symlink() for p in served.rglob("*"))  # the server refuses links out
        path, body, prelude = ours.request(Target("lora-0", cold=True), 5)
        _, body2, prelude2 = ours.request(Target("lora-0", cold=True), 5)
        assert isinstance(prelude, Prelude) and prelude.timed is None  # a publisher's step: untimed
        assert body["model"].startswith("cold-") and body["model"] != body2["model"]
        assert not (served / body["model"]).exists()  # made just before the request, not earlier
        asyncio.run(asyncio.to_thread(prelude.setup))
        assert (served / body["model"] / "adapter_model.safetensors").read_bytes() == \
            (assets.adapters / "lora-0" / "adapter_model.safetensors").read_bytes()
        _, warm = ours.request(Target("lora-0"), 5)
        assert {k: v for k, v in body.items() if k != "model"} == {k: v for k, v in warm.items() if k != "model"}
    finally:
        ours.cleanup()
    assert not served.exists()
