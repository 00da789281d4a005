"""`python -m training features`: frozen-LLM features + scikit-learn, scored and saved as safetensors."""

from __future__ import annotations

import hashlib
import json

import pytest
from safetensors import safe_open

from training.classification.features import FeatureClassifier, FeaturesConfig, embed, run_features
from training.classification.loading import load_backbone
from training.classification.metrics import classification_report


def digest(model_dir) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(model_dir.glob("*.safetensors")))).hexdigest()


def rescore(out, texts, labels, true) -> dict:
    """The saved classifier, reloaded, on the base's features of `texts`."""
    clf = FeatureClassifier.load(out / "classifier.safetensors")
    model, tok = load_backbone(clf.meta["base"])
    return classification_report(true, clf.predict(embed(model, tok, texts, clf.meta["pooling"])), labels)


@pytest.mark.parametrize("classifier, normalize, bound", [("logistic", "l2", 0.5), ("mlp", "standard", None)])
def test_features_classifier_learns_and_reloads(tiny, keyword_data, tmp_path, classifier, normalize, bound):
    before = digest(tiny["base"])
    out = tmp_path / classifier
    summary = run_features(FeaturesConfig(base=str(tiny["base"]), train=str(keyword_data["train"]),
                                          test=str(keyword_data["test"]), classifier=classifier, normalize=normalize,
                                          max_iter=1000 if classifier == "logistic" else 100, out=str(out), threads=1))
    evaluation = summary["evaluation"]
    if bound is not None:
        assert evaluation["accuracy"] > bound  # chance is 1/3 (seen: 0.68)
    assert digest(tiny["base"]) == before  # the base is only read
    with safe_open(out / "classifier.safetensors", framework="numpy") as f:
        assert json.loads(f.metadata()["classes"]) == ["food", "music", "sports"]
        shapes = {k: f.get_slice(k).get_shape() for k in f.keys()}
    if classifier == "logistic":
        assert shapes == {"coef.0": [3, 128], "intercept.0": [3]}
        assert evaluation["trainable_parameters"] == 3 * 128 + 3
    else:
        assert shapes["coef.0"] == [128, 64] and shapes["mean"] == [128] and shapes["scale"] == [128]
    assert not list(out.glob("*.pkl")) and json.loads((out / "run.json").read_text())["evaluation"] == evaluation
    rows = [json.loads(line) for line in keyword_data["test"].read_text().splitlines()]
    again = rescore(out, [r["text"] for r in rows], evaluation["labels"], [r["label"] for r in rows])
    assert again["confusion_matrix"] == evaluation["confusion_matrix"]  # the same predictions, reloaded


def test_mean_pooling_ignores_padding(tiny):
    model, tok = load_backbone(tiny["base"])
    alone = embed(model, tok, ["bread"], pooling="mean")
    padded = embed(model, tok, ["bread", "a much longer text with many more words in it"], pooling="mean")
    last = embed(model, tok, ["bread", "a much longer text with many more words in it"], pooling="last")
    assert abs(padded[0] - alone[0]).max() < 1e-5
    assert abs(last[0] - embed(model, tok, ["bread"], pooling="last")[0]).max() < 1e-5
