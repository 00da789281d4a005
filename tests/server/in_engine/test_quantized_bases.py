"""Int8 bases on CPU: the LoRA layers of a layer whose weight the int8 kernel prepacked find their
device; a W8A8 model on a CPU whose int8 arithmetic saturates gets a warning. (The whole path, a
LoRA served on a W8A8 base: tests/e2e/test_quantized_base.py.)"""

from __future__ import annotations

import platform

import pytest
import torch

from server.in_engine import quantized_bases

W8A8 = {"config_groups": {"group_0": {"input_activations": {"num_bits": 8, "type": "int", "strategy": "token"},
                                      "weights": {"num_bits": 8, "type": "int"}}}}
W4A16 = {"config_groups": {"group_0": {"input_activations": None, "weights": {"num_bits": 4, "type": "int"}}}}


def test_lora_device_of_a_prepacked_layer():
    quantized_bases.install()
    from vllm.lora.layers import base_linear, utils

    prepacked = torch.nn.Linear(4, 4)
    prepacked.weight_scale = torch.nn.Parameter(torch.ones(4))
    prepacked.weight = None  # what vLLM's oneDNN int8 kernel does after packing it
    assert utils._get_lora_device(prepacked) == torch.device("cpu")
    assert base_linear._get_lora_device is utils._get_lora_device
    assert utils._get_lora_device(torch.nn.Linear(4, 4, device="meta")) == torch.device("meta")


# Both answers of the host checks on every host: CI's CPU has no VNNI, others have it.
@pytest.mark.parametrize("machine, vnni, saturates", [("x86_64", False, True), ("x86_64", True, False),
                                                      ("AMD64", False, True), ("aarch64", False, False)])
@pytest.mark.parametrize("config, int8", [(W8A8, True), (W4A16, False), (None, False)])
def test_warning_only_for_int8_activations_where_they_saturate(config, int8, machine, vnni, saturates, caplog,
                                                               monkeypatch):
    monkeypatch.setattr(platform, "machine", lambda: machine)
    monkeypatch.setattr(torch.cpu, "_is_vnni_supported", lambda: vnni)
    assert quantized_bases.warn_if_inexact(config) == (int8 and saturates)
    assert ("without VNNI" in caplog.text) == (int8 and saturates)


def test_the_vnni_check_answers_on_this_host():
    assert isinstance(torch.cpu._is_vnni_supported(), bool)  # the private probe still exists
