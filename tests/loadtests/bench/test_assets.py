"""The bench assets: ensure_many_loras builds the extra LoRAs once, with distinct seeds, atomically
(fake builder); lora_writer writes build_lora_adapter's files byte for byte (real, tiny bases);
each model shape has its own assets folder."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from loadtests.bench import assets as bench_assets
from loadtests.bench.__main__ import default_assets, model_note, parse_args
from loadtests.bench.assets import (
    DEFAULT_SHAPE,
    LORA_ALPHA,
    LORA_INIT_SCALE,
    LORA_RANK,
    NUM_LORAS,
    SHAPES,
    BenchAssets,
    ensure_assets,
    ensure_many_loras,
    lora_writer,
)


@pytest.fixture
def fake_builder(monkeypatch):
    calls = []

    def writer(base, *, rank=LORA_RANK):
        def write(out, seed):
            calls.append((out.name, rank, seed))
            out.mkdir(parents=True, exist_ok=True)
            (out / "adapter_config.json").write_text(json.dumps({"r": rank, "seed": seed}))
            (out / "adapter_model.safetensors").write_bytes(b"w" * 8)
            return out
        return write

    monkeypatch.setattr(bench_assets, "lora_writer", writer)
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


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("spec, dtype", [
    ("bench", "bfloat16"),  # the bench shape's own assets
    ("test", "float32"),
    # the qwen2.5-0.5b spec's features at a tiny size: tied embeddings, rows past the tokenizer
    ("tied", "bfloat16"),
])
def test_lora_writer_writes_build_lora_adapters_files(tmp_path, spec, dtype):
    from training.tiny import TinyLlamaSpec, build_base_model, build_lora_adapter

    if spec == "tied":
        spec = TinyLlamaSpec(vocab_size=1024, tokenizer_vocab_size=512, tie_word_embeddings=True)
    base = build_base_model(tmp_path / "base", spec=spec, dtype=dtype)
    write = lora_writer(base)
    for seed in (1, 9):
        slow = build_lora_adapter(base, tmp_path / f"slow-{seed}", rank=LORA_RANK, alpha=LORA_ALPHA,
                                  seed=seed, init_scale=LORA_INIT_SCALE)
        fast = write(tmp_path / f"fast-{seed}", seed)
        # Same tensor names, shapes, dtypes and values (same safetensors bytes), same config.
        for name in ("adapter_model.safetensors", "adapter_config.json"):
            assert sha256(fast / name) == sha256(slow / name), (name, seed)
    weights = [sha256(tmp_path / f"fast-{seed}" / "adapter_model.safetensors") for seed in (1, 9)]
    assert weights[0] != weights[1]


def test_ensure_many_loras_builds_real_loras_of_their_seed(tmp_path):
    """With the real writer: lora-9 is the LoRA of seed 10 (lora-i: seed i + 1)."""
    from training.tiny import build_base_model, build_lora_adapter

    assets = BenchAssets(tmp_path / "assets")
    build_base_model(assets.base, spec="test", dtype="bfloat16")
    ensure_many_loras(assets, 10)
    expected = build_lora_adapter(assets.base, tmp_path / "expected", rank=LORA_RANK, seed=10)
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        assert sha256(assets.lora_path("lora-9") / name) == sha256(expected / name)


def test_every_shape_is_a_training_tiny_spec():
    from training.tiny import SPECS

    assert DEFAULT_SHAPE == "bench" and set(SHAPES) <= set(SPECS) and "qwen2.5-0.5b" in SHAPES


def test_a_build_of_another_shape_is_refused_not_overwritten(tmp_path):
    assets = BenchAssets(tmp_path)
    assets.stamp.write_text(json.dumps({"version": bench_assets.VERSION, "shape": "qwen2.5-0.5b",
                                        "parameters": 494_005_120}))
    assert ensure_assets(tmp_path, "qwen2.5-0.5b") == assets  # cached: nothing built
    with pytest.raises(ValueError, match="qwen2.5-0.5b"):
        ensure_assets(tmp_path)
    with pytest.raises(ValueError, match="unknown model shape"):
        ensure_assets(tmp_path, "gpt-5")
    assert "494,005,120 parameters" in model_note(assets) and "`qwen2.5-0.5b`" in model_note(assets)
    # A stamp from before --model-shape: the bench shape.
    assets.stamp.write_text(json.dumps({"version": bench_assets.VERSION, "parameters": 26_223_104}))
    assert ensure_assets(tmp_path) == assets and assets.built()["shape"] == "bench"


def test_model_shape_flag_picks_its_own_assets_folder(tmp_path):
    assert parse_args([]).model_shape == "bench"
    assert parse_args([]).assets == default_assets("bench") == Path("loadtests/results/assets")
    args = parse_args(["--model-shape", "qwen2.5-0.5b"])
    assert args.assets == Path("loadtests/results/assets-qwen2.5-0.5b")
    assert parse_args(["--model-shape", "qwen2.5-0.5b", "--assets", str(tmp_path)]).assets == tmp_path
    with pytest.raises(SystemExit):
        parse_args(["--model-shape", "1b"])
