"""A serving-only install: the real server, in interpreters where training and its dependencies
(TRL, datasets, pyarrow, bitsandbytes, scikit-learn, matplotlib) cannot be imported, answers a
LoRA and a base request, and records and rates a judgement on /ui.

serving_only_site/sitecustomize.py hides those packages in every interpreter started with it on
PYTHONPATH, vLLM's engine processes included (they inherit the environment). The import graph
itself is checked statically in tests/test_import_graph.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from tests import oracle
from tests.conftest import API_KEY, ServerProcess

SITE = Path(__file__).parent / "serving_only_site"
MAX_NEW = 8


def serving_only_env(log: Path) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(SITE), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path, "ADAPTER_SERVE_HIDDEN_LOG": str(log)}


def attempts(log: Path) -> set[str]:
    """Hidden modules something tried to import (each `pid module` line)."""
    return {line.split()[1] for line in log.read_text().splitlines()} if log.exists() else set()


def test_the_environment_hides_training(tmp_path):
    log = tmp_path / "hidden.log"
    script = ("import importlib.util, importlib.metadata as md\n"
              "for name in ('training', 'trl', 'datasets', 'pyarrow', 'bitsandbytes', 'sklearn', 'matplotlib'):\n"
              "    assert importlib.util.find_spec(name) is None, name\n"
              "    try:\n"
              "        __import__(name)\n"
              "    except ModuleNotFoundError:\n"
              "        pass\n"
              "    else:\n"
              "        raise AssertionError(name)\n"
              "for dist in ('trl', 'datasets', 'scikit-learn', 'matplotlib'):\n"
              "    try:\n"
              "        md.version(dist)\n"
              "    except md.PackageNotFoundError:\n"
              "        pass\n"
              "    else:\n"
              "        raise AssertionError(dist)\n"
              "import adapter_formats.ratings, server.config, numpy, safetensors\n")
    env = {**os.environ, **serving_only_env(log)}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training" in attempts(log)


def test_help_without_training(tmp_path):
    env = {**os.environ, **serving_only_env(tmp_path / "hidden.log")}
    result = subprocess.run([sys.executable, "-m", "server", "--help"], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--model" in result.stdout and "--adapters" in result.stdout


@pytest.fixture(scope="module")
def serving_only(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("serving-only")
    adapters = root / "adapters"
    shutil.copytree(tiny["lora-b"], adapters / "lora-b")
    log = root / "hidden.log"
    proc = ServerProcess(tiny["base"], adapters, root / "server.log",
                         "--preferences-file", str(root / "preferences.jsonl"), env=serving_only_env(log))
    proc.hidden_log = log
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def test_serves_a_lora_and_the_base_without_training(serving_only, tiny):
    client = openai.OpenAI(base_url=serving_only.url + "/v1", api_key=API_KEY, max_retries=0, timeout=120)
    messages = [{"role": "user", "content": "Say something about adapters."}]
    prompt_ids = list(oracle.chat_ids(tiny["base"], messages))
    for model, adapters in (("lora-b", (tiny["lora-b"],)), ("base", ())):
        r = client.chat.completions.create(model=model, messages=messages, max_tokens=MAX_NEW, temperature=0,
                                           extra_body={"return_token_ids": True})
        assert r.model == model
        assert r.choices[0].model_extra["token_ids"] == oracle.greedy(tiny["base"], prompt_ids, MAX_NEW, *adapters)


def test_the_feedback_page_records_and_rates_without_training(serving_only):
    """A comparison, a judgement (checked with adapter_formats.preferences) and the leaderboard
    (adapter_formats.ratings) on the serving-only server."""
    with httpx.Client(base_url=serving_only.url, timeout=120,
                      headers={"Authorization": f"Bearer {API_KEY}"}) as http:
        r = http.post("/ui/api/comparisons", json={
            "prompt": "Say something.", "targets": [{"model": "lora-b"}, {"model": "base"}],
            "temperature": 0, "max_tokens": MAX_NEW, "anonymous": False})
        assert r.status_code == 200, r.text
        events = [json.loads(line[len("data: "):]) for line in r.text.splitlines()
                  if line.startswith("data: ") and line != "data: [DONE]"]
        started = events[0]
        texts = ["" for _ in started["answers"]]
        for e in events:
            if e["type"] == "delta":
                texts[e["answer"]] += e["text"]
        assert events[-1]["type"] == "done" and events[-1]["judgeable"], events[-1]
        verdict = {"verdict": "better", "winner": "A"} if len(set(texts)) == 2 else {"verdict": "tie"}
        r = http.post("/ui/api/judgements", json={"comparison_id": started["id"], **verdict})
        assert r.status_code == 200, r.text
        board = http.get("/ui/api/leaderboard").json()
        assert board["judgements"] == 1 and {e["model"] for e in board["data"]} == {"lora-b", "base"}
    # Nothing in the server's processes even tried to import training.
    assert "training" not in attempts(serving_only.hidden_log)


def test_lora_slots_are_sized_from_memory_by_default(serving_only, tiny):
    """No LoRA flag: on CPU the engine gets as many slots as --lora-slots-gib holds (at most 256),
    the log saying how many and why (server/lora_slots.py)."""
    from transformers import AutoConfig

    from server.lora_slots import resolve

    expected = resolve(None, 1.0, None, True, AutoConfig.from_pretrained(tiny["base"]), 16, "float32")
    info = httpx.get(serving_only.url + "/server_info?config_format=json", timeout=30,
                     headers={"Authorization": f"Bearer {API_KEY}"}).json()
    assert info["vllm_config"]["lora_config"]["max_loras"] == expected.count == 256
    assert f"LoRA slots (adapters in one batch): {expected.count}, from --lora-slots-gib" in \
        serving_only.log.read_text()
