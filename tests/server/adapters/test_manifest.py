"""The manifest's runner and task: an adapter is served only by a server of its runner and task."""

from __future__ import annotations

import pytest

from server.adapters.manifest import FORMAT, mismatch

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
