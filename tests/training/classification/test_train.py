"""`python -m training classifier`: what each mode trains, what it saves, and what it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import PeftConfig, PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from adapter_formats.manifest import base_model_identity
from adapter_formats.servable import validate_lora
from server.adapters.base_model import BaseModelInfo
from tests.training.classification.conftest import classifier_recipe
from tests.training.conftest import bits, write_jsonl
from training import devices
from training.classification.train import SECTIONS, train_classifier
from training.recipe import RecipeError, load_recipe
from training.methods.common import Refused
from training.methods.lora import ALL_LINEAR

TEXTS = ["we saw bread today", "a guitar near home again", "they said football was nice"]


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(model_dir / "model.safetensors")


def changed(trained: dict[str, torch.Tensor], base: dict[str, torch.Tensor]) -> set[str]:
    """Names of the base's tensors that the trained model holds with other values."""
    return {k for k, v in base.items() if k in trained and not torch.equal(trained[k], v)}


def test_head_mode_trains_only_the_new_score_head(head_run, tiny):
    trained, base = weights(head_run / "model"), weights(tiny["base"])
    backbone = {k for k in base if k.startswith("model.")}
    assert backbone <= set(trained) and not changed(trained, base)  # every backbone tensor bit-identical
    assert trained["score.weight"].shape == (3, 128) and "lm_head.weight" not in trained
    run = json.loads((head_run / "run.json").read_text())
    assert run["training"]["trainable_parameters"] == 3 * 128  # the head only, no bias
    config = json.loads((head_run / "model" / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"]
    assert config["id2label"] == {"0": "food", "1": "music", "2": "sports"} and config["pad_token_id"] == 2
    evaluation = run["evaluation"]
    assert evaluation["examples"] == 60 and sum(map(sum, evaluation["confusion_matrix"])) == 60
    assert 0 <= evaluation["macro_f1"] <= 1 and run["runner"] == "pooling" and run["task"] == "classify"


def test_last_layers_mode_trains_the_head_the_top_layer_and_the_final_norm(tiny, keyword_data, tmp_path):
    out = tmp_path / "last"
    train_classifier(classifier_recipe(tiny["base"], keyword_data, out, classifier={"mode": "last_layers",
                                                                                    "layers": 1}))
    trained, base = weights(out / "model"), weights(tiny["base"])
    top = {k for k in base if k.startswith("model.layers.1.")} | {"model.norm.weight"}
    assert changed(trained, base) == top  # the tiny base has 2 layers: layer 0 and embeddings untouched
    assert "score.weight" in trained


def test_full_mode_trains_the_backbone(tiny, keyword_data, tmp_path):
    out = tmp_path / "full"
    train_classifier(classifier_recipe(tiny["base"], keyword_data, out, classifier={"mode": "full"}))
    moved = changed(weights(out / "model"), weights(tiny["base"]))
    assert {"model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
            "model.layers.1.mlp.down_proj.weight", "model.norm.weight"} <= moved


# Both branches of training.devices.native_bf16, on every host (see tests/training/methods/test_methods.py).
@pytest.mark.parametrize("native_bf16", [False, True], ids=["emulated-bf16", "native-bf16"])
@pytest.mark.parametrize("mode, trained", [("head", set()), ("last_layers", {"model.layers.1.", "model.norm."})])
def test_auto_precision_keeps_frozen_weights_bit_identical(mode, trained, native_bf16, tiny, keyword_data, tmp_path,
                                                          monkeypatch):
    monkeypatch.setattr(devices, "native_bf16", lambda: native_bf16)
    out = tmp_path / mode
    summary = train_classifier(classifier_recipe(tiny["base"], keyword_data, out, model={"dtype": "auto"},
                                                 train={"bf16": None}, classifier={"mode": mode, "layers": 1}))
    assert summary["training"]["dtype"] == "float32"  # the head (and layers) train with float32 master copies
    saved, base = weights(out / "model"), weights(tiny["base"])
    moved = {k for k, v in base.items() if k in saved and not torch.equal(bits(saved[k]), bits(v))}
    assert {k for k in base if k.startswith(tuple(trained))} == moved if trained else not moved
    assert all(v.dtype == torch.float32 for v in saved.values())


def test_lora_on_a_causal_lm_saves_the_adapter_and_an_equal_merged_classifier(tiny, keyword_data, tmp_path):
    out = tmp_path / "lora"
    summary = train_classifier(classifier_recipe(tiny["base"], keyword_data, out, classifier={"mode": "lora"},
                                                 lora={"rank": 4, "dropout": 0.0}))
    assert summary["produces"] == "model" and summary["adapter"] == str(out / "adapter")
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert "score" in config["modules_to_save"]  # the new head trained in full: why this is merged
    peft = AutoModelForSequenceClassification.from_pretrained(tiny["base"], num_labels=3, dtype=torch.float32)
    peft.config.pad_token_id = 2
    peft = PeftModel.from_pretrained(peft, out / "adapter")
    merged = AutoModelForSequenceClassification.from_pretrained(out / "model", dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(out / "model")
    enc = tok(TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        want, got = peft.eval()(**enc).logits, merged.eval()(**enc).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert changed(weights(out / "model"), weights(tiny["base"]))  # the LoRA is in the merged weights


def test_lora_on_a_classifier_keeps_its_head_and_publishes_a_servable_adapter(head_run, keyword_data, tmp_path):
    classifier, out, adapters = head_run / "model", tmp_path / "lora-b", tmp_path / "adapters"
    summary = train_classifier(classifier_recipe(classifier, keyword_data, out, classifier={"mode": "lora"},
                                                 lora={"rank": 4, "dropout": 0.0},
                                                 output={"publish": True, "adapters_dir": str(adapters)}))
    adapter = out / "adapter"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["task_type"] is None and not config["modules_to_save"]
    # What the server checks when a request names the adapter (adapter_formats/servable.py).
    spec = validate_lora(config, adapter / "adapter_model.safetensors", BaseModelInfo.load(classifier).linear_shapes,
                         max_rank=16)
    assert spec.rank == 4 and spec.target_modules == tuple(sorted(ALL_LINEAR))
    lora = load_file(adapter / "adapter_model.safetensors")
    assert any(v.abs().sum() > 0 for k, v in lora.items() if "lora_B" in k)  # B starts at zero: it trained
    peft_config = PeftConfig.from_pretrained(adapter)
    model = PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(classifier), adapter,
                                      config=peft_config)
    assert torch.equal(model.base_model.model.score.weight, weights(classifier)["score.weight"])  # head frozen
    manifest = json.loads((adapters / out.name / "manifest.json").read_text())
    assert summary["published"] == str(adapters / out.name)
    assert manifest["runner"] == "pooling" and manifest["task"] == "classify"
    assert manifest["base_model"]["identity"] == base_model_identity(classifier)


def test_an_unknown_mode_is_refused_with_the_choices(tiny, keyword_data, tmp_path):
    with pytest.raises(RecipeError, match=r"ClassifierOptions.mode must be one of \['head', 'last_layers'"):
        classifier_recipe(tiny["base"], keyword_data, tmp_path / "x", classifier={"mode": "prompt"})
    with pytest.raises(RecipeError, match="mode"):
        load_recipe("classifier", SECTIONS, {"classifier": {"mode": "bogus"}})


def test_lora_on_a_classifier_for_other_labels_is_refused_before_training(head_run, tmp_path):
    rows = [{"text": f"text {i}", "label": "yes" if i % 2 else "no"} for i in range(20)]
    data = {"train": write_jsonl(tmp_path / "yes-no.jsonl", rows), "test": write_jsonl(tmp_path / "t.jsonl", rows)}
    out = tmp_path / "refused"
    with pytest.raises(Refused, match=r"classifier for labels \['food', 'music', 'sports'\] but the data's "
                                      r"labels are \['no', 'yes'\]"):
        train_classifier(classifier_recipe(head_run / "model", data, out, classifier={"mode": "lora"}))
    assert not out.exists()


def test_publishing_lora_with_a_new_head_is_refused(tiny, keyword_data, tmp_path):
    out = tmp_path / "refused"
    with pytest.raises(Refused, match="not servable per request"):
        train_classifier(classifier_recipe(tiny["base"], keyword_data, out, classifier={"mode": "lora"},
                                           output={"publish": True}))
    assert not out.exists()
