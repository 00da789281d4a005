"""Publishing: atomic directory swap, manifest with base identity, template, data and metrics."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from adapter_formats.manifest import base_model_identity, mismatch
from tests.training.conftest import make_recipe
from training.__main__ import main
from training.methods import METHODS
from training.methods.common import Refused, train
from training import publish as publication
from training.publish import publish_run


@pytest.fixture(scope="module")
def lora_run(tiny, reverse_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "rev-lora"
    train(make_recipe("lora", tiny["base"], reverse_data, out,
                      output={"evaluate": True, "eval_examples": 4, "max_new_tokens": 4}), METHODS["lora"])
    return out


def test_publish_writes_adapter_and_manifest(lora_run, tiny, tmp_path):
    target = publish_run(lora_run, "my-rev", tmp_path / "adapters")
    assert sorted(p.name for p in target.iterdir()) == ["adapter_config.json", "adapter_model.safetensors",
                                                        "manifest.json"]
    manifest = json.loads((target / "manifest.json").read_text())
    assert mismatch(manifest, base_model_identity(tiny["base"])) is None  # what the server checks
    assert manifest["name"] == "my-rev" and manifest["method"] == "lora"
    assert manifest["prompt_template"] == {"name": "alpaca",
                                           "template": "### Instruction:\n{prompt}\n\n### Response:\n"}
    assert manifest["data"]["sha256"].startswith("sha256:") and manifest["data"]["examples"] > 0
    assert manifest["hyperparameters"]["lora"]["rank"] == 16
    assert "exact_match" in manifest["evaluation"]["task"]["tuned"]
    assert manifest["created"].endswith("Z")
    assert not [p for p in (tmp_path / "adapters").iterdir() if p.name.startswith(".")]  # no leftovers


def test_republish_replaces_the_whole_adapter(lora_run, tmp_path):
    root = tmp_path / "adapters"
    first = publish_run(lora_run, "x", root)
    (first / "stale-file").write_text("from the old version")
    publish_run(lora_run, "x", root)
    assert not (root / "x" / "stale-file").exists()
    assert [p.name for p in root.iterdir()] == ["x"]


def test_republish_swaps_in_one_step(lora_run, tmp_path, monkeypatch):
    """The name is never missing: the old directory is not moved aside before the new one lands."""
    root = tmp_path / "adapters"
    publish_run(lora_run, "x", root)
    rename = os.rename

    def no_gap(src, dst):
        assert Path(src) != root / "x", "the served adapter was moved away before its replacement"
        rename(src, dst)

    monkeypatch.setattr(publication.os, "rename", no_gap)
    (root / "x" / "stale-file").write_text("from the old version")
    publish_run(lora_run, "x", root)
    assert not (root / "x" / "stale-file").exists()
    assert [p.name for p in root.iterdir()] == ["x"]


def test_publish_command_line(lora_run, tmp_path):
    assert main(["publish", "--run", str(lora_run), "--name", "cli-rev", "--adapters-dir", str(tmp_path)]) == 0
    assert (tmp_path / "cli-rev" / "manifest.json").is_file()


def test_full_runs_cannot_be_published_as_adapters(tiny, reverse_data, tmp_path):
    recipe = make_recipe("full", tiny["base"], reverse_data, tmp_path / "f", output={"publish": True})
    with pytest.raises(Refused, match="writes a model directory"):
        train(recipe, METHODS["full"])
