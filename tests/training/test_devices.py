"""What "auto" resolves to (dtype, autocast, checkpointing) and how CPU threads are shared among processes."""

from __future__ import annotations

import pytest
import torch

from training import devices
from training.recipe import load_recipe
from training.methods import METHODS


def recipe(command: str, **sections):
    return load_recipe(command, METHODS[command].sections, {"model": {"base": "unused"}, **sections})


@pytest.mark.parametrize("native", [False, True])
def test_auto_dtype_is_bf16_where_native_except_where_base_weights_train(native, monkeypatch):
    monkeypatch.setattr(devices, "native_bf16", lambda: native)
    expected = torch.bfloat16 if native else torch.float32
    for command in ("lora", "qlora", "prompt_tuning"):
        assert not METHODS[command].trains_base_weights
        assert devices.training_dtype(recipe(command)) == expected
    for command in ("full", "selective"):  # float32 master copies of what trains
        assert METHODS[command].trains_base_weights
        assert devices.training_dtype(recipe(command), trains_base_weights=True) == torch.float32
    assert devices.autocast_bf16(recipe("lora")) is native


def test_explicit_choices_win_over_auto(monkeypatch):
    monkeypatch.setattr(devices, "native_bf16", lambda: False)
    r = recipe("full", model={"base": "unused", "dtype": "bfloat16"}, train={"bf16": True,
                                                                           "gradient_checkpointing": True})
    assert devices.training_dtype(r) == torch.bfloat16
    assert devices.autocast_bf16(r) and devices.gradient_checkpointing(r)
    assert not devices.gradient_checkpointing(recipe("qlora", train={"gradient_checkpointing": False}))


def test_gradient_checkpointing_is_on_by_default_for_qlora_only():
    assert devices.gradient_checkpointing(recipe("qlora"))
    assert not any(devices.gradient_checkpointing(recipe(c)) for c in ("lora", "prompt_tuning", "full", "selective"))


@pytest.mark.parametrize("capability, native", [("AVX2", False), ("DEFAULT", False),
                                                ("AVX512", True), ("AVX512_BF16", True)])
def test_cpus_without_avx512_keep_float32_by_default(monkeypatch, capability, native):
    monkeypatch.setattr(devices.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices.torch.backends.cpu, "get_cpu_capability", lambda: capability)
    assert devices.native_bf16() is native
    expected = torch.bfloat16 if native else torch.float32
    assert devices.training_dtype(recipe("lora")) == expected
    assert devices.autocast_bf16(recipe("lora")) is native
    assert devices.training_dtype(recipe("full"), trains_base_weights=True) == torch.float32


def test_cpu_threads_are_shared_among_the_machines_processes(monkeypatch):
    monkeypatch.setattr(devices.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(devices.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert devices.cpu_threads(0) == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert devices.cpu_threads(0) == 4
    monkeypatch.setattr(devices.os, "getloadavg", lambda: (7.5, 0.0, 0.0))
    assert devices.cpu_threads(0) == 1 and devices.cpu_threads(3) == 3
