"""On CPU, vLLM inspects the model's class in the server's process, not a fresh interpreter."""

from __future__ import annotations

import os
import subprocess

from vllm.model_executor.models import registry

from server.startup import model_info


def test_inspection_runs_in_this_process(monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "_run_in_subprocess", registry._run_in_subprocess)  # restored after
    assert model_info.install()  # this machine is CPU-only
    assert registry._run_in_subprocess(os.getpid) == os.getpid()

    # A cold cache (no modelinfos yet) is inspected without vLLM's inspection interpreter.
    run = subprocess.run

    def no_inspection_process(command, *args, **kwargs):
        assert command != registry._SUBPROCESS_COMMAND, "vLLM started its inspection interpreter"
        return run(command, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", no_inspection_process)
    monkeypatch.setenv("VLLM_CACHE_ROOT", str(tmp_path))
    model = registry.ModelRegistry.models["LlamaForCausalLM"]
    info = model.inspect_model_cls()
    assert info.architecture == "LlamaForCausalLM" and info.is_text_generation_model
    assert list((tmp_path / "modelinfos").iterdir())  # and cached, as vLLM does
