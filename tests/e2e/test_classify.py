"""/classify on a --runner pooling server (a tiny LlamaForSequenceClassification, 3 labels):
probabilities equal transformers' softmax of the classifier head, base and LoRA.

One extra server for this module; see tests/e2e/test_embeddings.py for the embedding one.
"""

from __future__ import annotations

import shutil

import httpx
import numpy as np
import pytest

from adapter_formats.manifest import base_model_identity, write_manifest
from tests import oracle
from tests.conftest import API_KEY
from tests.e2e.helpers import pooling_server, publish
from tests.e2e.test_bad_input import assert_error
from training.tiny.classifier import build_classifier_model

LABELS = ("negative", "neutral", "positive")
TEXTS = ["The quick brown fox", "Reverse the word: planet", "1 2 3 4"]
TOLERANCE = dict(rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def classifier(tiny, tmp_path_factory):
    # The tiny base's backbone under a `score` head: LoRAs built for the base fit it.
    return build_classifier_model(tiny["base"], tmp_path_factory.mktemp("classifier") / "model",
                                  labels=LABELS)


@pytest.fixture(scope="module")
def pooling(tiny, classifier, tmp_path_factory):
    adapters = tmp_path_factory.mktemp("classify-adapters")
    shutil.copytree(tiny["lora-a"], adapters / "lora-a")
    # --convert auto: a *ForSequenceClassification checkpoint is served as a classifier.
    with pooling_server(classifier, adapters, tiny["root"] / "classify-server.log") as proc:
        yield proc


@pytest.fixture(scope="module")
def http(pooling) -> httpx.Client:
    with httpx.Client(base_url=pooling.url, timeout=60,
                      headers={"Authorization": f"Bearer {API_KEY}"}) as c:
        yield c


def classify(http, **body) -> dict:
    r = http.post("/classify", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_probabilities_match_transformers(http, classifier):
    tok = oracle.tokenizer(classifier)
    r = classify(http, input=TEXTS)  # no `model`: the base model, as vLLM's /classify
    assert r["object"] == "list" and r["model"] == classifier.name
    assert r["id"].startswith("classify-")
    for i, (item, text) in enumerate(zip(r["data"], TEXTS)):
        want = oracle.class_probs(classifier, tok.encode(text))
        np.testing.assert_allclose(item["probs"], want, **TOLERANCE)
        assert item["index"] == i and item["num_classes"] == len(LABELS)
        assert item["label"] == LABELS[int(np.argmax(want))]
    tokens = sum(len(tok.encode(t)) for t in TEXTS)
    assert r["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    assert len({tuple(np.round(item["probs"], 3)) for item in r["data"]}) == len(TEXTS)


def test_lora_probabilities_match_peft(http, classifier, tiny):
    ids = oracle.tokenizer(classifier).encode(TEXTS[0])
    got = classify(http, model="lora-a", input=[ids])["data"][0]["probs"]
    np.testing.assert_allclose(got, oracle.class_probs(classifier, ids, tiny["lora-a"]),
                               **TOLERANCE)
    base = classify(http, model=classifier.name, input=[ids])["data"][0]["probs"]
    assert not np.allclose(got, base, atol=1e-3)  # the adapter must matter


@pytest.mark.parametrize("body, param, contains", [
    ({"input": []}, "input", "must not be empty"),
    ({"input": ""}, "input", "empty strings"),
    ({"input": "word " * 100}, "input", "maximum context length is 64"),
    ({"input": "x", "model": "no-such-adapter"}, "model", "does not exist"),
])
def test_bad_input(http, body, param, contains):
    status = 404 if param == "model" else 400
    assert_error(http.post("/classify", json=body), status, param=param, contains=contains)


def test_embeddings_on_a_classifier_is_400(http, classifier):
    assert_error(http.post("/v1/embeddings", json={"model": classifier.name, "input": "x"}), 400,
                 contains="use /classify")


def test_embedding_adapter_is_refused(http, pooling, classifier, tiny, tmp_path):
    src = tmp_path / "for-embed"
    shutil.copytree(tiny["lora-a"], src)
    write_manifest(src, {"name": "for-embed", "method": "lora", "runner": "pooling", "task": "embed",
                         "base_model": {"identity": base_model_identity(classifier)}})
    publish(src, pooling.adapters, "for-embed")
    error = assert_error(http.post("/classify", json={"model": "for-embed", "input": "x"}), 400,
                         param="model", contains="trained for embed")
    assert error["code"] == "invalid_adapter"
