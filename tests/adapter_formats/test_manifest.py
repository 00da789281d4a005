"""The manifest: an adapter is served only on its base model (or a quantized copy of it), by a
server of its runner and task."""

from __future__ import annotations

import json

import pytest

from adapter_formats.manifest import FORMAT, mismatch

IDENTITY = "sha256:" + "0" * 64


def manifest(**fields) -> dict:
    return {"format": FORMAT, "base_model": {"identity": IDENTITY}, **fields}


@pytest.mark.parametrize("fields, runner, task, reason", [
    ({}, "generate", None, None),  # every adapter published before pooling
    ({"runner": "generate"}, "generate", None, None),
    ({}, "pooling", "embed", "generate runner (manifest.json names no runner)"),
    ({"runner": "pooling", "task": "embed"}, "generate", None, "--runner pooling"),
    ({"runner": "pooling", "task": "embed"}, "pooling", "embed", None),
    ({"runner": "pooling"}, "pooling", "classify", None),  # no task stated: either
    ({"runner": "pooling", "task": "classify"}, "pooling", "embed", "--convert classify"),
    ({"runner": "speculate"}, "generate", None, "not one of generate, pooling"),
])
def test_runner_and_task(fields, runner, task, reason):
    got = mismatch(manifest(**fields), IDENTITY, runner, task)
    assert got is None if reason is None else reason in got, got


def test_base_identity_is_checked_first():
    assert "different base model" in mismatch(manifest(runner="pooling"), "sha256:" + "1" * 64)


def test_a_quantized_base_accepts_adapters_of_the_model_it_came_from(tmp_path):
    from adapter_formats.manifest import QUANTIZATION_LINEAGE_FILE, quantized_from_identity

    # What `training quantize` writes beside the quantized model's config.json.
    (tmp_path / QUANTIZATION_LINEAGE_FILE).write_text(json.dumps({"quantized_from": {"identity": IDENTITY}}))
    source = quantized_from_identity(tmp_path)
    assert source == IDENTITY
    quantized = "sha256:" + "2" * 64
    assert mismatch(manifest(), (quantized, source)) is None
    assert "different base model" in mismatch(manifest(), (quantized,))


@pytest.mark.parametrize("content", [None, "not json", '{"quantized_from": 3}', '{"quantized_from": {"identity": 1}}'])
def test_no_or_unreadable_lineage_means_no_second_identity(tmp_path, content):
    from adapter_formats.manifest import QUANTIZATION_LINEAGE_FILE, quantized_from_identity

    if content is not None:
        (tmp_path / QUANTIZATION_LINEAGE_FILE).write_text(content)
    assert quantized_from_identity(tmp_path) is None
