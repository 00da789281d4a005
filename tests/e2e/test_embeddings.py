"""/v1/embeddings on a --runner pooling server (the tiny base converted with --convert embed):
the official client's embeddings equal transformers + PEFT's, base and LoRA (a contrastive one
trained and published here too); bad input is a 4xx.

One extra server for this module (tests/e2e/test_classify.py starts the classifier's: vLLM
builds a model's pooler for one task, so one server cannot do both).
"""

from __future__ import annotations

import base64
import shutil

import httpx
import numpy as np
import openai
import pytest

from adapter_formats.manifest import base_model_identity, write_manifest
from tests import oracle
from tests.conftest import API_KEY
from tests.e2e.helpers import pooling_server, publish
from tests.e2e.test_bad_input import assert_error
from tests.training.embeddings.conftest import contrastive_recipe

TEXTS = ["The quick brown fox", "Reverse the word: planet", "1 2 3 4"]
# float32 on both sides; vLLM's CPU kernels sum in another order than torch's.
TOLERANCE = dict(rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def pooling(tiny, tmp_path_factory):
    adapters = tmp_path_factory.mktemp("pooling-adapters")
    for name in ("lora-a", "prompt-a"):
        shutil.copytree(tiny[name], adapters / name)
    with pooling_server(tiny["base"], adapters, tiny["root"] / "pooling-server.log",
                        "--convert", "embed") as proc:
        yield proc


@pytest.fixture(scope="module")
def client(pooling) -> openai.OpenAI:
    return openai.OpenAI(base_url=pooling.url + "/v1", api_key=API_KEY, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def http(pooling) -> httpx.Client:
    with httpx.Client(base_url=pooling.url, timeout=60,
                      headers={"Authorization": f"Bearer {API_KEY}"}) as c:
        yield c


def test_embeddings_match_transformers(client, tiny):
    # The client asks for base64 unless told otherwise, and decodes it: the usual path.
    r = client.embeddings.create(model="base", input=TEXTS)
    tok = oracle.tokenizer(tiny["base"])
    ids = [tok.encode(t) for t in TEXTS]  # with BOS, as the server tokenizes
    assert [d.index for d in r.data] == [0, 1, 2] and r.model == "base"
    for d, prompt in zip(r.data, ids):
        np.testing.assert_allclose(d.embedding, oracle.embedding(tiny["base"], prompt), **TOLERANCE)
        assert np.linalg.norm(d.embedding) == pytest.approx(1.0, abs=1e-5)
    assert r.usage.prompt_tokens == r.usage.total_tokens == sum(map(len, ids))


def test_lora_embeddings_match_peft(client, tiny):
    ids = oracle.tokenizer(tiny["base"]).encode(TEXTS[1])
    got = client.embeddings.create(model="lora-a", input=[ids]).data[0].embedding
    np.testing.assert_allclose(got, oracle.embedding(tiny["base"], ids, tiny["lora-a"]),
                               **TOLERANCE)
    base = client.embeddings.create(model="base", input=[ids]).data[0].embedding
    assert not np.allclose(got, base, atol=1e-3)  # the adapter must matter


def test_input_forms_agree(http, tiny):
    ids = [oracle.tokenizer(tiny["base"]).encode(t) for t in TEXTS[:2]]

    def vectors(given) -> list[list[float]]:
        r = http.post("/v1/embeddings", json={"model": "base", "input": given,
                                              "encoding_format": "float"})
        assert r.status_code == 200, r.text
        return [d["embedding"] for d in r.json()["data"]]

    texts, lists = vectors(TEXTS[:2]), vectors(ids)
    np.testing.assert_allclose(texts, lists, **TOLERANCE)
    np.testing.assert_allclose(vectors(TEXTS[0]), texts[:1], **TOLERANCE)
    np.testing.assert_allclose(vectors(ids[1]), texts[1:], **TOLERANCE)


def test_base64_is_little_endian_float32_of_the_floats(http):
    body = {"model": "lora-a", "input": TEXTS[0]}
    floats = http.post("/v1/embeddings", json={**body, "encoding_format": "float"}).json()
    packed = http.post("/v1/embeddings", json={**body, "encoding_format": "base64"}).json()
    vector = np.frombuffer(base64.b64decode(packed["data"][0]["embedding"]), dtype="<f4")
    assert vector.tolist() == floats["data"][0]["embedding"]  # float32 both ways: exact
    assert packed["usage"] == floats["usage"]


@pytest.mark.parametrize("body, param, contains", [
    ({"input": []}, "input", "must not be empty"),
    ({"input": ""}, "input", "empty strings"),
    ({"input": ["fine", ""]}, "input", "empty strings"),
    ({"input": [[]]}, "input", "must not be empty"),
    ({"input": [[1, 99999]]}, "input", "outside the vocabulary"),
    ({"input": "word " * 100}, "input", "maximum context length is 64"),
    ({"input": ["short", "word " * 100]}, "input", "input[1] has"),
    ({"input": "x", "encoding_format": "int8"}, "encoding_format", "'float' or 'base64'"),
    ({"input": "x", "dimensions": 8}, "dimensions", "matryoshka"),
    ({"input": "x", "dimensions": 0}, "dimensions", "greater than or equal to 1"),
    ({"input": {"text": "x"}}, "input", ""),
    ({"input": "x", "temperature": 0}, "temperature", "unrecognized"),
])
def test_bad_input_is_400(http, body, param, contains):
    assert_error(http.post("/v1/embeddings", json={"model": "base", **body}), 400,
                 param=param, contains=contains)


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as err:
        client.embeddings.create(model="no-such-adapter", input="hi")
    assert err.value.body["code"] == "model_not_found"


@pytest.mark.parametrize("path, body", [
    ("/v1/completions", {"model": "base", "prompt": "hi"}),
    ("/v1/chat/completions", {"model": "base", "messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/responses", {"model": "base", "input": "hi"}),
])
def test_generation_endpoints_are_400(http, path, body):
    error = assert_error(http.post(path, json=body), 400, contains="--runner generate")
    assert error["code"] == "wrong_runner"


def test_classify_on_an_embedding_model_is_400(http):
    assert_error(http.post("/classify", json={"input": "hi"}), 400, contains="/v1/embeddings")


def test_adapters_for_another_runner_or_task_are_refused(client, http, pooling, tiny, tmp_path):
    identity = {"identity": base_model_identity(tiny["base"])}
    for name, extra, reason in [
        ("for-chat", {}, "generate runner (manifest.json names no runner)"),
        ("for-classify", {"runner": "pooling", "task": "classify"}, "--convert classify"),
        ("for-embed", {"runner": "pooling", "task": "embed"}, None),
    ]:
        src = tmp_path / name
        shutil.copytree(tiny["lora-a"], src)
        write_manifest(src, {"name": name, "method": "lora", "base_model": identity, **extra})
        publish(src, pooling.adapters, name)
        if reason is None:  # the same weights as lora-a, served
            got = client.embeddings.create(model=name, input=TEXTS[0]).data[0].embedding
            want = client.embeddings.create(model="lora-a", input=TEXTS[0]).data[0].embedding
            np.testing.assert_allclose(got, want, **TOLERANCE)
        else:
            error = assert_error(http.post("/v1/embeddings", json={"model": name, "input": "x"}),
                                 400, param="model", contains=reason)
            assert error["code"] == "invalid_adapter"


def test_soft_prompts_are_refused(http):
    error = assert_error(http.post("/v1/embeddings", json={"model": "prompt-a", "input": "x"}),
                         400, param="model", contains="soft prompts need --runner generate")
    assert error["code"] == "invalid_adapter"


def test_trained_contrastive_adapter_is_served_as_trained(client, pooling, tiny, tmp_path):
    """`python -m training contrastive --publish` into this server: its embeddings are the ones
    training optimised and evaluated (training.embeddings.retrieval.embed, a padded batch)."""
    from training.embeddings.contrastive import train_contrastive
    from training.embeddings.data import write_paraphrase_data
    from training.embeddings.retrieval import embed_all
    from training.evaluation.held_out import load_tuned

    data = write_paraphrase_data(tmp_path / "data", n_train=40, n_test=8)
    summary = train_contrastive(contrastive_recipe(
        tiny["base"], data, tmp_path / "paraphrase-embed",
        output={"publish": True, "adapters_dir": str(pooling.adapters)}))
    name = summary["name"]
    got = [d.embedding for d in client.embeddings.create(model=name, input=TEXTS).data]
    tok = oracle.tokenizer(tiny["base"])
    want = embed_all(load_tuned(tiny["base"], tmp_path / "paraphrase-embed" / "adapter"),
                     [tok.encode(t) for t in TEXTS], tok.pad_token_id)
    np.testing.assert_allclose(got, want.numpy(), **TOLERANCE)
    base = [d.embedding for d in client.embeddings.create(model="base", input=TEXTS).data]
    assert not np.allclose(got, base, atol=1e-3)
