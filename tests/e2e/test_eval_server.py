"""`eval --server` and `elo --server` against the session server: the same prompt ids, greedy, so
the served answers equal the in-process ones (the server runs float32, as the in-process eval)."""

from __future__ import annotations

import json

from tests.conftest import API_KEY
from tests.training.conftest import write_jsonl
from training.__main__ import main

WORDS = ("tiger", "apple", "river", "lucky", "stone", "cloud", "green", "horse")


def test_eval_through_the_server_equals_in_process(server, tiny, tmp_path):
    data = write_jsonl(tmp_path / "held.jsonl", [{"instruction": f"Reverse the word: {w}", "output": w[::-1]}
                                                 for w in WORDS])
    shots = write_jsonl(tmp_path / "train.jsonl", [{"instruction": f"Uppercase: {w}", "output": w.upper()}
                                                   for w in WORDS[:3]])
    common = ["eval", "--base", str(tiny["base"]), "--adapter", str(tiny["lora-a"]), "--data", str(data),
              "--shots", "1", "--shots-from", str(shots), "--max-new-tokens", "8"]
    assert main([*common, "--out", str(tmp_path / "local.json")]) == 0
    # The served names default to the directories' names: "base" and "lora-a", as the server calls them.
    assert main([*common, "--server", server.url, "--api-key", API_KEY, "--concurrency", "4",
                 "--out", str(tmp_path / "served.json")]) == 0
    local = json.loads((tmp_path / "local.json").read_text())["task"]
    served = json.loads((tmp_path / "served.json").read_text())["task"]
    assert list(served) == list(local) == ["base", "base (1-shot)", "tuned"]
    for side in local:
        assert served[side]["predictions"] == local[side]["predictions"], side
        assert served[side]["exact_match"] == local[side]["exact_match"]
        assert served[side]["perplexity"] is None and local[side]["perplexity"] is not None
    # The adapter and the shot change the answers, or the equality above would prove little.
    assert local["tuned"]["predictions"] != local["base"]["predictions"]
    assert local["base (1-shot)"]["predictions"] != local["base"]["predictions"]


def test_elo_with_a_served_judge(server, tiny, tmp_path):
    data = write_jsonl(tmp_path / "held.jsonl", [{"instruction": f"Reverse the word: {w}", "output": w[::-1]}
                                                 for w in WORDS[:2]])
    out = tmp_path / "elo"
    assert main(["elo", "--base", str(tiny["base"]), "--adapters", "lora-a", "lora-b", "--data", str(data),
                 "--server", server.url, "--api-key", API_KEY, "--judge", "server", "--judge-model", "base",
                 "--max-new-tokens", "6", "--rounds", "50", "--out", str(out)]) == 0
    result = json.loads((out / "elo.json").read_text())
    # Structured outputs make every verdict parse: 3 pairs, each asked in both orders, per prompt.
    assert [len(j) for j in result["judgements"]] == [6, 6]
    assert sum(r["games"] for r in result["ratings"]) == 2 * 2 * 6
    assert (out / "elo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
