"""ensure_many_loras: the extra LoRAs are built once, with distinct seeds, atomically (fake builder)."""

from __future__ import annotations

import json

import pytest

from loadtests.bench import assets as bench_assets
from loadtests.bench.assets import NUM_LORAS, BenchAssets, ensure_many_loras


@pytest.fixture
def fake_builder(monkeypatch):
    import training.tiny

    calls = []

    def build(base, out, *, rank, seed):
        calls.append((out.name, rank, seed))
        out.mkdir(parents=True, exist_ok=True)
        (out / "adapter_config.json").write_text(json.dumps({"r": rank, "seed": seed}))
        (out / "adapter_model.safetensors").write_bytes(b"w" * 8)
        return out

    monkeypatch.setattr(training.tiny, "build_lora_adapter", build)
    return calls


def test_builds_the_40_extra_loras_once_with_distinct_seeds_outside_adapters(tmp_path, fake_builder):
    assets = BenchAssets(tmp_path)
    names = ensure_many_loras(assets, 48)
    assert names == [f"lora-{i}" for i in range(48)]
    # Built in hidden staging folders (renamed into place after); lora-0..7 are the assets' own.
    assert [c[0].split(".tmp-")[0] for c in fake_builder] == [f".{n}" for n in names[NUM_LORAS:]]
    assert len({c[2] for c in fake_builder}) == 40 and min(c[2] for c in fake_builder) == NUM_LORAS + 1
    assert {c[1] for c in fake_builder} == {bench_assets.LORA_RANK}
    assert assets.lora_path("lora-3") == tmp_path / "adapters" / "lora-3"
    assert assets.lora_path("lora-47") == tmp_path / "more-loras" / "lora-47"
    assert assets.lora_path("lora-999") == tmp_path / "more-loras" / "lora-999"  # any lora-N
    assert sorted(p.name for p in assets.more_loras.iterdir()) == sorted(names[NUM_LORAS:])  # no staging left
    fake_builder.clear()
    ensure_many_loras(assets, 48)
    assert fake_builder == []  # cached


def test_a_half_built_lora_is_rebuilt(tmp_path, fake_builder):
    assets = BenchAssets(tmp_path)
    ensure_many_loras(assets, 10)
    (assets.lora_path("lora-9") / "adapter_model.safetensors").unlink()
    fake_builder.clear()
    ensure_many_loras(assets, 10)
    assert [c[0].split(".tmp-")[0] for c in fake_builder] == [".lora-9"]
    assert (assets.lora_path("lora-9") / "adapter_model.safetensors").is_file()
