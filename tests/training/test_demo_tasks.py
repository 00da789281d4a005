"""The demo's data (no training): extraction answers are schema-valid JSON that fits the recipe,
and held-out prompts of the new tasks never appear in training."""

from __future__ import annotations

import json
import re
from collections import Counter

import jsonschema
import pytest

from training.recipe import read_yaml
from training.data import encode
from training.data.dataset import read_valid
from training.demo.__main__ import ADAPTERS, RECIPES, SPEC
from training.demo.tasks import EXTRACT_SCHEMA, PRODUCTS, write_demo_data
from training.templates import resolve_template
from training.tiny.corpus import WORDS
from training.tiny.tokenizer import build_tokenizer


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    return write_demo_data(tmp_path_factory.mktemp("demo-data"))


def rows(path) -> list[tuple[str, str]]:
    return [(e.prompt, e.response) for e in read_valid(str(path), "messages", "error", Counter())]


@pytest.mark.parametrize("split", ["extract-train", "extract-test"])
def test_extract_answers_are_schema_valid_json_of_the_review(data, split):
    jsonschema.Draft202012Validator.check_schema(EXTRACT_SCHEMA)
    assert set(PRODUCTS) <= set(WORDS)  # words the base model was pretrained on
    for prompt, answer in rows(data[split]):
        fields = json.loads(answer)
        jsonschema.validate(fields, EXTRACT_SCHEMA)
        # Keys in schema order: a grammar-guided server emits them in that order too.
        assert list(fields) == list(EXTRACT_SCHEMA["properties"])
        product, stars = re.fullmatch(r'Extract as JSON: "The (\w+) was \w+, (\d) stars?\."', prompt).groups()
        assert (fields["product"], fields["stars"]) == (product, int(stars))


@pytest.mark.parametrize("task", ["first-letters", "reverse-words", "extract"])
def test_held_out_prompts_of_new_tasks_are_not_trained_on(data, task):
    train = {p for p, _ in rows(data[f"{task}-train"])}
    test = {p for p, _ in rows(data[f"{task}-test"])}
    assert len(test) > 100 and not train & test


def test_extract_rows_fit_the_recipe_and_the_evaluation_length(data):
    tokenizer = build_tokenizer(SPEC.vocab_size, SPEC.seed)
    adapter = ADAPTERS["demo-extract-lora"]
    max_length = read_yaml(RECIPES / adapter.recipe)["data"]["max_length"]
    template = resolve_template("chat")
    for example in read_valid(str(data["extract-test"]), "messages", "error", Counter()):
        encode(tokenizer, template, example, max_length, too_long="error")  # raises if truncated
        # One token to spare beyond the answer: an answer not followed by eos does not match.
        assert len(tokenizer(example.response, add_special_tokens=False).input_ids) < adapter.max_new_tokens


def labelled(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_sentiment_classification_set_has_three_classes_and_held_out_texts(data):
    train, test = labelled(data["sentiment-train"]), labelled(data["sentiment-test"])
    assert (len(train), len(test)) == (3000, 300)
    for rows in (train, test):
        counts = Counter(r["label"] for r in rows)
        assert set(counts) == {"negative", "neutral", "positive"} and min(counts.values()) > len(rows) / 4
    assert not {r["text"] for r in train} & {r["text"] for r in test}
    assert {"text": "The river was great.", "label": "positive"}.keys() == train[0].keys()


@pytest.mark.parametrize("recipe", ["classifier-head.yaml", "classifier-full.yaml", "classifier-lora.yaml",
                                    "contrastive-demo.yaml"])
def test_demo_data_has_the_files_the_new_recipes_read(data, recipe):
    raw = read_yaml(RECIPES / recipe)["data"]
    for split in ("train", "test"):
        name = raw[split].removeprefix(".demo/data/").removesuffix(".jsonl")
        assert data[name].name == f"{name}.jsonl" and data[name].stat().st_size > 0


def test_demo_recipes_are_named_after_their_adapters():
    for name, adapter in ADAPTERS.items():
        raw = read_yaml(RECIPES / adapter.recipe)
        assert raw["output"]["name"] == name and raw["train"]["output_dir"] == f".demo/runs/{name}"
        assert (RECIPES / adapter.recipe).read_text().splitlines()[0].endswith(
            f"--config training/recipes/{adapter.recipe} --publish")


# Both branches of training.devices.native_bf16 on every host (CI's CPU has no native bf16).
@pytest.mark.parametrize("native", [False, True])
def test_demo_recipes_autocast_bf16_only_where_it_is_native(native, monkeypatch, tmp_path):
    from training.demo import recipes

    monkeypatch.setattr(recipes, "native_bf16", lambda: native)
    recipe = recipes.recipe_for("lora", "demo-firstletters-lora.yaml", tmp_path, tmp_path / "adapters", 1.0)
    assert read_yaml(recipes.RECIPES / "demo-firstletters-lora.yaml")["train"]["bf16"] is True
    assert recipe.train.bf16 is native
