"""Cold adapters: unique names, and a complete adapter folder published atomically."""

from __future__ import annotations

import os

import pytest

from loadtests.bench import contender as contender_mod
from loadtests.bench.assets import BenchAssets
from loadtests.bench.contender import ADAPTER_FILES, publish_copy
from loadtests.bench.ours import Ours
from loadtests.bench.stock_vllm import StockVLLM


def _fake_adapter(path):
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 16}')
    (path / "adapter_model.safetensors").write_bytes(os.urandom(4096))
    (path / "README.md").write_text("not copied")
    return path


def test_publish_copy_writes_the_whole_adapter_then_renames(tmp_path, monkeypatch):
    source = _fake_adapter(tmp_path / "lora-0")
    served = tmp_path / "served"
    served.mkdir()
    renames = []

    def rename(src, dst):
        # At the moment the adapter appears under its name, its staging folder is complete, hidden
        # (leading dot: never served) and inside the served folder (same filesystem: atomic).
        src, dst = os.fspath(src), os.fspath(dst)
        assert os.path.dirname(src) == os.fspath(served) and os.path.basename(src).startswith(".cold-1.tmp-")
        assert sorted(os.listdir(src)) == sorted(ADAPTER_FILES)
        assert not os.path.exists(dst)
        renames.append((src, dst))
        real_rename(src, dst)

    real_rename = os.rename
    monkeypatch.setattr(contender_mod.os, "rename", rename)
    target = publish_copy(source, served, "cold-1")
    assert target == served / "cold-1" and len(renames) == 1 and renames[0][1] == os.fspath(target)
    for f in ADAPTER_FILES:
        assert (target / f).read_bytes() == (source / f).read_bytes()
    assert os.listdir(served) == ["cold-1"]  # no staging left behind


def test_publish_copy_leaves_nothing_when_it_fails(tmp_path, monkeypatch):
    source = _fake_adapter(tmp_path / "lora-0")
    served = tmp_path / "served"
    monkeypatch.setattr(contender_mod.os, "rename", lambda *a: (_ for _ in ()).throw(OSError("disk")))
    with pytest.raises(OSError):
        publish_copy(source, served, "cold-2")
    assert os.listdir(served) == []
    (source / "adapter_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError):
        publish_copy(source, served, "cold-3")


def test_publish_copy_refuses_an_existing_name(tmp_path):
    source = _fake_adapter(tmp_path / "lora-0")
    publish_copy(source, tmp_path / "served", "cold-4")
    with pytest.raises(FileExistsError):
        publish_copy(source, tmp_path / "served", "cold-4")


def test_cold_names_are_unique_per_contender_and_run(tmp_path):
    assets = BenchAssets(tmp_path)
    a, b = Ours(assets), StockVLLM(assets)
    names = [a.cold_name() for _ in range(1000)] + [b.cold_name() for _ in range(1000)]
    assert len(set(names)) == 2000 and all(n.startswith("cold-") for n in names)
    assert Ours(assets).cold_name() != Ours(assets).cold_name()  # another run: another run id


def test_workdir_is_outside_the_assets_and_cleaned_up(tmp_path):
    c = Ours(BenchAssets(tmp_path))
    work = c.workdir()
    assert work.is_dir() and not work.is_relative_to(tmp_path)
    c.cleanup()
    assert not work.exists()
