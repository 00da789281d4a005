"""The demo build's new steps (classifiers, embedding adapter, few-shot rows, Elo) and its report.

A real build (`python -m training.demo build --minutes-scale 0.05`: ~4 minutes) is too slow for
the suite; here each step function runs on the tiny test model with a few steps, under the
demo's OUT layout (OUT/base, OUT/data, OUT/runs), and the report is rendered from what they return.
"""

from __future__ import annotations

import json
import re

import pytest

from training.demo.__main__ import ADAPTERS, RETIRED, DemoAdapter, evaluate_run, remove_retired
from training.demo.classifiers import CLASSIFIERS, FEATURES, train_classifiers
from training.demo.embedding import NAME as EMBEDDING, pooling_adapters, train_embedding
from training.demo.ratings import mixed_set, rate
from training.demo.report import render
from training.demo.tasks import pairs, write_chat, write_sentiment_data
from training.embeddings.data import write_paraphrase_data

FAST = {"max_steps": 2, "batch_size": 8, "threads": 1, "logging_steps": 1}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def demo_out(tiny, tmp_path_factory):
    """OUT as the build lays it out, with the tiny model as OUT/base and small data files."""
    out = tmp_path_factory.mktemp("demo-out")
    (out / "base").symlink_to(tiny["base"], target_is_directory=True)
    data = out / "data"
    write_sentiment_data(data, n_train=48, n_test=24, seed=1)
    write_paraphrase_data(data, n_train=64, n_test=16, seed=1)
    for task, seed in (("reverse", 1), ("uppercase", 2)):
        write_chat(data / f"{task}-train.jsonl", pairs((task,), 12, seed))
        write_chat(data / f"{task}-test.jsonl", pairs((task,), 6, seed + 100))
    return out


@pytest.fixture(scope="module")
def steps(demo_out, tiny) -> dict:
    """What each new step returns, as `build` stores it in the report."""
    classifiers = train_classifiers(demo_out, demo_out / "base", 24, overrides={
        "train": {**FAST, "save_steps": 1000, "progress": False}, "data": {"max_length": 32}})
    embedding = train_embedding(demo_out, overrides={"train": {**FAST, "max_steps": 3},
                                                     "output": {"eval_examples": 16}})
    adapter = DemoAdapter("lora", "", 1.0, True, max_new_tokens=4, shots=True)
    data = demo_out / "data"
    evaluation = evaluate_run({"artifact": str(tiny["lora-a"])}, tiny["base"], str(data / "reverse-test.jsonl"),
                              str(data / "uppercase-test.jsonl"), adapter, str(data / "reverse-train.jsonl"), limit=4)
    elo = rate(demo_out, tiny["base"], [tiny["lora-a"], tiny["lora-b"]],
               {"reverse": data / "reverse-test.jsonl", "uppercase": data / "uppercase-test.jsonl"},
               max_new_tokens=4, per_task=3, rounds=20)
    return {"classifiers": classifiers, "embedding": embedding, "evaluation": evaluation, "elo": elo}


def test_classifiers_step_trains_every_method_into_runs(steps, demo_out):
    rows = steps["classifiers"]
    assert [r["method"] for r in rows] == [*CLASSIFIERS, FEATURES]
    for r in rows:
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["macro_f1"] <= 1 and r["examples"] == 24
        assert r["labels"] == ["negative", "neutral", "positive"]
        assert r["trainable_parameters"] > 0 and r["seconds"] >= 0
    # Models stay in OUT/runs (served as models by a pooling server), never in an adapters dir.
    for name in ("classifier-head", "classifier-full", "classifier-lora"):
        assert (demo_out / "runs" / name / "model" / "config.json").is_file()
    assert (demo_out / "runs" / "classifier-features" / "classifier.safetensors").is_file()
    by = {r["method"]: r for r in rows}
    assert by["full (fine-tuning II)"]["trainable_parameters"] > by["lora (merged)"]["trainable_parameters"] \
        > by["head (fine-tuning I)"]["trainable_parameters"]


def test_embedding_step_publishes_a_pooling_adapter_outside_the_shared_dir(steps, demo_out):
    r = steps["embedding"]
    manifest = json.loads((pooling_adapters(demo_out) / EMBEDDING / "manifest.json").read_text())
    assert (manifest["runner"], manifest["task"], manifest["name"]) == ("pooling", "embed", EMBEDDING)
    assert set(r["evaluation"]["retrieval"]) == {"base", "adapter"}
    assert {"recall@1", "recall@5", "recall@10", "mrr"} <= set(r["evaluation"]["retrieval"]["adapter"])


def test_evaluate_run_adds_k_shot_rows_between_base_and_tuned(steps):
    task = steps["evaluation"]["task"]
    assert list(task) == ["base", "base (0-shot)", "base (1-shot)", "base (3-shot)", "tuned"]
    assert [task[f"base ({k}-shot)"]["shots_used"] for k in (0, 1, 3)] == [0, 1, 3]
    assert "forgetting" in steps["evaluation"]


def test_demo_adapters_with_shots_are_firstletters_and_extract():
    assert {name for name, a in ADAPTERS.items() if a.shots} == {"demo-firstletters-lora", "demo-extract-lora"}


def test_elo_step_rates_the_base_and_adapters_on_a_mixed_set(steps, demo_out):
    r = steps["elo"]
    assert r["prompts"] == 6 and r["per_task"] == {"reverse": 3, "uppercase": 3}
    assert {x["model"] for x in r["ratings"]} == {"base", "lora-a", "lora-b"}
    assert (demo_out / "elo" / "elo.png").stat().st_size > 0
    rows = (demo_out / "data" / "elo-mixed.jsonl").read_text().splitlines()
    assert len(rows) == 6 and all("messages" in json.loads(row) for row in rows)


def test_mixed_set_draws_per_task_rows_of_each_file(tmp_path):
    files = {}
    for task, seed in (("reverse", 1), ("uppercase", 2)):
        files[task] = write_chat(tmp_path / f"{task}.jsonl", pairs((task,), 10, seed))
    first = mixed_set(files, 4, tmp_path / "a.jsonl").read_text()
    assert first == mixed_set(files, 4, tmp_path / "b.jsonl").read_text()  # seeded: the same draw
    prompts = [json.loads(line)["messages"][0]["content"] for line in first.splitlines()]
    assert len(prompts) == 8 and sum(p.startswith("Reverse") for p in prompts) == 4


def test_report_has_every_new_section(steps, demo_out):
    report = {"version": "test", "build_seconds": 1.0, "minutes_scale": 0.05,
              "base": {"steps": 3, "seconds": 1.0}, "step_seconds": {"classifiers": 1.0},
              "adapters": {"demo-firstletters-lora": {"method": "lora", "steps": 2, "seconds": 0.5,
                                                      "evaluation": steps["evaluation"]}},
              "classifiers": steps["classifiers"], "embedding": steps["embedding"], "elo": steps["elo"]}
    text = render(demo_out, report)
    for k in (0, 1, 3):
        assert f"| task | base ({k}-shot) |" in text
    # One classifier table: the four methods with their five columns.
    assert "| method | accuracy | macro-F1 | trainable parameters | training seconds |" in text
    table_rows = [line for line in text.splitlines() if re.match(r"\| (head|full|lora|features) \(", line)]
    assert len(table_rows) == 4
    assert "--runner pooling --model RUN/model" in text
    # Retrieval: base and adapter rows, and how to serve the embedding adapter.
    assert "| model | recall@1 | recall@5 | recall@10 | mrr |" in text
    assert re.search(r"^\| base \| [\d.]+ \|", text, re.M) and re.search(r"^\| adapter \| [\d.]+ \|", text, re.M)
    assert f"--runner pooling --convert embed --model {demo_out / 'base'} --adapters {pooling_adapters(demo_out)}" \
        in text
    # Elo: the table, every competitor, and the plot's path.
    assert "| rank | model | Elo | 95% interval |" in text
    assert all(f"| {m} |" in text for m in ("base", "lora-a", "lora-b"))
    assert str(demo_out / "elo" / "elo.png") in text
    assert "smoke build" in text


def test_a_rebuild_removes_the_retired_soft_prompt_only_when_this_demo_made_it(tmp_path):
    out, adapters = tmp_path / "out", tmp_path / "adapters"
    assert RETIRED == ("demo-polite-softprompt",)
    (adapters / "demo-polite-softprompt").mkdir(parents=True)
    (adapters / "demo-polite-softprompt" / "manifest.json").write_text(
        json.dumps({"base_model": {"path": str((out / "base").resolve())}}))
    remove_retired(tmp_path / "elsewhere", adapters)  # another demo's base: kept
    assert (adapters / "demo-polite-softprompt").is_dir()
    remove_retired(out, adapters)
    assert not (adapters / "demo-polite-softprompt").exists()
