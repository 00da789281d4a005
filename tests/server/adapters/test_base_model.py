"""What an adapter must fit, read from the base model's config without loading weights."""

from __future__ import annotations

from server.adapters.base_model import BaseModelInfo


def test_base_model_shapes_come_from_config(tiny):
    base = BaseModelInfo.load(tiny["base"])
    assert base.hidden_size == 128
    assert base.linear_shapes["model.layers.0.self_attn.q_proj"] == (128, 128)
    assert base.linear_shapes["model.layers.1.mlp.down_proj"] == (256, 128)
    assert base.identity.startswith("sha256:")
