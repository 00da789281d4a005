"""`training quantize`: compressed-tensors checkpoints whose weights are the originals rounded to
the scheme's levels, lm_head untouched, and a lineage file naming the source model's identity.
(Served with a LoRA on top: tests/e2e/test_quantized_base.py.)"""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, CompressedTensorsConfig

from adapter_formats.manifest import base_model_identity
from server.adapters.base_model import BaseModelInfo
from training.__main__ import main
from training.quantize import quantize_model


def load(path, **kwargs):
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kwargs).eval()


@pytest.mark.parametrize("scheme, fmt, levels, group_size", [
    ("W8A8", "int-quantized", 255, None),  # one scale per output channel
    ("W4A16", "pack-quantized", 15, 64),   # one scale per 64 input columns
])
def test_weights_are_rounded_to_the_schemes_levels(tiny, tmp_path, scheme, fmt, levels, group_size):
    out = quantize_model(tiny["base"], tmp_path / "q", scheme, group_size=group_size or 128)
    config = json.loads((out / "config.json").read_text())["quantization_config"]
    assert config["quant_method"] == "compressed-tensors" and config["format"] == fmt
    assert config["ignore"] == ["lm_head"]
    assert (out / "tokenizer.json").is_file()

    original = load(tiny["base"])
    quantized = load(out, quantization_config=CompressedTensorsConfig(dequantize=True))
    w = original.model.layers[0].mlp.down_proj.weight  # (out, in)
    q = quantized.model.layers[0].mlp.down_proj.weight
    groups = w.reshape(w.shape[0], -1, group_size or w.shape[1])
    # Symmetric min-max: a group's step is 2 * max|w| / levels; rounding moves by half a step.
    step = 2 * groups.abs().amax(-1, keepdim=True) / levels
    error = (q.reshape(groups.shape) - groups).abs()
    assert (error <= step / 2 + 1e-6).all()
    assert error.max() > 0  # it did quantize
    assert torch.equal(quantized.lm_head.weight, original.lm_head.weight)


def test_lineage_names_the_source_model(tiny, tmp_path):
    assert main(["quantize", "--model", str(tiny["base"]), "--out", str(tmp_path / "q")]) == 0
    lineage = json.loads((tmp_path / "q" / "quantization.json").read_text())
    assert lineage["scheme"] == "W8A8"
    assert lineage["quantized_from"]["identity"] == base_model_identity(tiny["base"])
    # What the server reads: the quantized model accepts adapters made for the source model.
    info = BaseModelInfo.load(tmp_path / "q")
    assert info.accepted_identities == (base_model_identity(tmp_path / "q"), base_model_identity(tiny["base"]))
    assert info.linear_shapes == BaseModelInfo.load(tiny["base"]).linear_shapes


@pytest.mark.parametrize("args, message", [
    (["--scheme", "W3A3"], "scheme must be one of W8A8, W4A16"),
    (["--scheme", "W4A16", "--group-size", "100"], "not a multiple of --group-size 100"),
])
def test_bad_options_are_refused(tiny, tmp_path, capsys, args, message):
    assert main(["quantize", "--model", str(tiny["base"]), "--out", str(tmp_path / "q"), *args]) == 1
    assert message in capsys.readouterr().err


def test_an_existing_output_is_not_overwritten(tiny, tmp_path, capsys):
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "keep.txt").write_text("mine")
    assert main(["quantize", "--model", str(tiny["base"]), "--out", str(tmp_path / "q")]) == 1
    assert "not empty" in capsys.readouterr().err and (tmp_path / "q" / "keep.txt").read_text() == "mine"
