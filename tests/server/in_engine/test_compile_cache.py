"""A compiled function saved the way vLLM saves its AOT compile cache loads back usable on CPU."""

from __future__ import annotations

import torch
from torch._dynamo.aot_compile_types import BundledAOTAutogradSerializableCallable

from server.in_engine import compile_cache


def double_plus_one(x: torch.Tensor) -> torch.Tensor:
    return torch.relu(x) * 2 + 1


def test_an_inductor_artifact_can_be_finalized_as_vllms_loader_does(tmp_path, monkeypatch):
    # What vLLM 0.32's CPU path produces: Inductor, full graph, saved, loaded back.
    compiled = torch.compile(double_plus_one, backend="inductor", fullgraph=True).aot_compile(
        ((torch.randn(4),), {}))
    path = tmp_path / "model"
    compiled.save_compiled_function(str(path))
    with open(path, "rb") as f:
        loaded = torch.compiler.load_compiled_function(f, f_globals=globals())
    artifact = loaded._artifacts.compiled_fn
    assert isinstance(artifact, BundledAOTAutogradSerializableCallable)

    monkeypatch.delattr(BundledAOTAutogradSerializableCallable, "finalize_loading", raising=False)
    assert not hasattr(artifact, "finalize_loading")  # vLLM's loader fails here and recompiles
    assert compile_cache.install()
    assert not compile_cache.install()  # once
    artifact.finalize_loading(None)  # vLLM's call (with its config) now succeeds
    x = torch.randn(4)
    assert torch.equal(loaded(x), double_plus_one(x))
