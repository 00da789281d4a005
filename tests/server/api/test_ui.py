"""/ui and /ui/api on a scripted engine: the page and its key rules, comparisons streamed and kept,
judgements appended in the format training reads, the leaderboard, and bad input (4xx, never 5xx).

The real engine and a real browser: tests/e2e/test_ui.py.
"""

from __future__ import annotations

import json
import shutil

import pytest
from vllm.v1.engine.exceptions import EngineDeadError

from adapter_formats.ratings import read_judgements
from server.serving.feedback import comparisons
from tests.server.api.scripted import ScriptedEngine
from training.rlhf.preferences import read_preferences

KEY = "sk-ui-test"
REPLIES = {"lora-a": "alpha answer here", "lora-b": "beta answer here"}  # the base: one two three
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def prefs(tmp_path_factory):
    return tmp_path_factory.mktemp("feedback") / "preferences.jsonl"


@pytest.fixture
def ui(make_client, tiny, tmp_path, prefs):
    """make(**overrides): a client with lora-a and lora-b served, key KEY, judgements to `prefs`."""
    for name in ("lora-a", "lora-b"):
        shutil.copytree(tiny[name], tmp_path / name)

    def make(engine=None, **config):
        client = make_client(engine or ScriptedEngine(replies=REPLIES),
                             **{"api_key": [KEY], "preferences_file": str(prefs), **config})
        client.headers.update(AUTH)
        return client
    return make


def compare(client, targets=("lora-a", "lora-b"), **fields):
    body = {"prompt": "Say something.", "targets": [{"model": t} for t in targets],
            "temperature": 0, "max_tokens": 8, **fields}
    return client.post("/ui/api/comparisons", json=body)


def events(response) -> list[dict]:
    blocks = [b for b in response.text.split("\n\n") if b.startswith("data: ")]
    assert blocks[-1] == "data: [DONE]"
    return [json.loads(b.removeprefix("data: ")) for b in blocks[:-1]]


def compared(client, targets=("lora-a", "lora-b"), **fields) -> tuple[dict, list[str]]:
    """A finished comparison: its `comparison` event and each shown answer's text."""
    r = compare(client, targets, **fields)
    assert r.status_code == 200, r.text
    evs = events(r)
    started = evs[0]
    texts = ["" for _ in started["answers"]]
    for e in evs:
        if e["type"] == "delta":
            texts[e["answer"]] += e["text"]
    assert evs[-1] == {"type": "done", "id": started["id"], "judgeable": True}
    return started, texts


def judge(client, comparison_id, **verdict):
    return client.post("/ui/api/judgements", json={"comparison_id": comparison_id, **verdict})


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and {"message", "type", "param", "code"} <= set(body["error"])
    return body["error"]


# ---- the page ----

def test_page_and_static_files_load_without_a_key(ui):
    client = ui()
    client.headers.pop("Authorization")
    page = client.get("/ui")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert '<label for="api-key">API key</label>' in page.text
    assert 'data-needs-key="true"' in page.text and 'src="/ui/static/ui.js"' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing from elsewhere
    for path, kind in (("/ui/static/ui.js", "javascript"), ("/ui/static/ui.css", "text/css")):
        r = client.get(path)
        assert r.status_code == 200 and kind in r.headers["content-type"]


def test_every_data_call_needs_the_key(ui):
    client = ui()
    client.headers.pop("Authorization")
    for r in (client.get("/ui/api/leaderboard"), compare(client),
              judge(client, "cmp-x", verdict="tie")):
        assert error_of(r, 401)["code"] == "invalid_api_key"


def test_no_ui_flag_serves_no_page(ui):
    client = ui(ui=False)
    assert error_of(client.get("/ui"), 404)
    assert error_of(client.get("/ui/api/leaderboard"), 404)
    assert "/ui/api/comparisons" not in client.get("/openapi.json").json()["paths"]


def test_openapi_states_the_ui_api(ui):
    paths = ui().get("/openapi.json").json()["paths"]
    assert "/ui" not in paths  # a page, not an API
    comparisons_doc = paths["/ui/api/comparisons"]["post"]["responses"]
    assert "text/event-stream" in comparisons_doc["200"]["content"]
    assert {"400", "401", "404", "429", "503"} <= set(comparisons_doc)
    assert {"400", "401", "404", "409"} <= set(paths["/ui/api/judgements"]["post"]["responses"])
    assert "/ui/api/leaderboard" in paths


# ---- comparisons and judgements ----

def test_anonymous_comparison_hides_and_shuffles_until_judged(ui, prefs, monkeypatch):
    monkeypatch.setattr(comparisons, "_shuffle", lambda order: order.reverse())
    client = ui()
    started, texts = compared(client)
    assert started["id"].startswith("cmp-") and len(started["id"]) == 4 + 32
    assert started["anonymous"] is True and started["expires_in"] == comparisons.TTL_SECONDS
    assert [(a["label"], a["model"]) for a in started["answers"]] == [("A", None), ("B", None)]
    # Reversed: lora-b's answer is shown first.
    assert texts == [" beta answer here", " alpha answer here"]

    r = judge(client, started["id"], verdict="better", winner="B")
    assert r.status_code == 200, r.text
    result = r.json()
    assert [(a["label"], a["model"]) for a in result["answers"]] == [("A", "lora-b"),
                                                                      ("B", "lora-a")]
    assert result["pairs"] == 1

    (row,) = lines(prefs)
    assert (row["chosen"], row["rejected"]) == (" alpha answer here", " beta answer here")
    assert (row["chosen_model"], row["rejected_model"]) == ("lora-a", "lora-b")
    assert row["prompt"] == [{"role": "user", "content": "Say something."}]
    assert row["comparison_id"] == started["id"] and row["verdict"] == "better"
    assert row["sampling"] == {"temperature": 0.0, "top_p": 1.0, "max_tokens": 8, "seed": None}
    assert row["anonymous"] is True and row["mode"] == "chat" and row["judged_at"].endswith("Z")
    # training's own reader takes the file as it is
    (pair,), skipped = read_preferences(prefs)
    assert (pair.chosen, pair.rejected, skipped) == (" alpha answer here", " beta answer here", 0)


def test_named_comparison_keeps_the_order(ui):
    started, texts = compared(ui(), anonymous=False)
    assert [(a["label"], a["model"]) for a in started["answers"]] == [("A", "lora-a"),
                                                                       ("B", "lora-b")]
    assert texts == [" alpha answer here", " beta answer here"]


def test_completion_mode_writes_a_text_prompt(ui, prefs):
    client = ui()
    started, _ = compared(client, mode="completion", anonymous=False)
    assert judge(client, started["id"], verdict="better", winner="A").status_code == 200
    (row,) = lines(prefs)
    assert row["prompt"] == "Say something." and row["mode"] == "completion"


def test_best_of_three_ranking_and_ties_are_read_by_training(ui, prefs, tiny):
    client = ui()
    three = ("base", "lora-a", "lora-b")
    best, _ = compared(client, three, anonymous=False)
    ranked, _ = compared(client, three, anonymous=False)
    tied, _ = compared(client, anonymous=False)
    assert judge(client, best["id"], verdict="better", winner="C").json()["pairs"] == 2
    ranking = judge(client, ranked["id"], verdict="ranking", ranking=["B", "C", "A"])
    assert ranking.json()["pairs"] == 3
    assert judge(client, tied["id"], verdict="both_bad").json()["pairs"] == 0

    rows = lines(prefs)
    assert [r["comparison_id"] for r in rows] == [best["id"], best["id"], ranked["id"], tied["id"]]
    assert [(r["chosen_model"], r["rejected_model"]) for r in rows[:2]] == [("lora-b", "base"),
                                                                             ("lora-b", "lora-a")]
    assert rows[2]["models"] == ["lora-a", "lora-b", "base"]
    assert rows[2]["responses"][0] == " alpha answer here"
    assert rows[3]["verdict"] == "both_bad" and rows[3]["models"] == ["lora-a", "lora-b"]
    pairs, skipped = read_preferences(prefs)
    assert (len(pairs), skipped) == (5, 0)
    # One judgement per comparison for the ratings, however many rows it took.
    assert [len(j) for j in read_judgements(prefs)] == [2, 3, 1]


def test_leaderboard_rates_the_judged_targets_within_the_keys_scope(ui, tmp_path_factory):
    keys = tmp_path_factory.mktemp("keys") / "keys.yaml"
    keys.write_text('keys:\n  - key: only-a\n    adapters: ["lora-a"]\n    base_model: false\n')
    client = ui(api_keys_file=str(keys))
    assert client.get("/ui/api/leaderboard").json()["data"] == []
    for _ in range(3):
        started, _ = compared(client, anonymous=False)
        assert judge(client, started["id"], verdict="better", winner="A").status_code == 200
    board = client.get("/ui/api/leaderboard").json()
    assert board["judgements"] == 3 and board["rounds"] == 1000 and board["confidence"] == 0.95
    a, b = board["data"]
    assert (a["model"], a["wins"], b["model"], b["losses"]) == ("lora-a", 3, "lora-b", 3)
    assert a["ci_low"] <= a["rating"] <= a["ci_high"] and a["rating"] > b["rating"]
    scoped = client.get("/ui/api/leaderboard", headers={"Authorization": "Bearer only-a"}).json()
    assert [e["model"] for e in scoped["data"]] == ["lora-a"]


# ---- bad input: 4xx in the OpenAI error shape, never a 5xx ----

@pytest.mark.parametrize("change, status, param", [
    ({"targets": [{"model": "lora-a"}, {"model": "nope"}]}, 404, "targets.1.model"),
    ({"targets": [{"model": "lora-a"}, {"model": "lora-b", "soft_prompt": "nope"}]}, 404,
     "targets.1.soft_prompt"),
    ({"prompt": ""}, 400, "prompt"),
    ({"prompt": "  \n "}, 400, "prompt"),
    ({"targets": [{"model": "lora-a"}]}, 400, "targets"),
    ({"targets": [{"model": "lora-a"}] * 5}, 400, "targets"),
    ({"targets": [{"model": "lora-a"}, {"model": "lora-a"}]}, 400, "targets.1"),
    ({"mode": "poetry"}, 400, "mode"),
    ({"temperature": 3}, 400, "temperature"),
    ({"max_tokens": 0}, 400, "max_tokens"),
    ({"max_tokens": 100000}, 400, "max_tokens"),
    ({"best_of": 2}, 400, "best_of"),
])
def test_bad_comparisons(ui, change, status, param):
    body = {"prompt": "hi", "targets": [{"model": "lora-a"}, {"model": "lora-b"}], **change}
    r = ui().post("/ui/api/comparisons", json=body)
    assert error_of(r, status)["param"] == param


def test_a_model_outside_the_keys_scope_is_unknown(ui, tmp_path_factory):
    keys = tmp_path_factory.mktemp("keys") / "keys.yaml"
    keys.write_text('keys:\n  - key: only-a\n    adapters: ["lora-a"]\n    base_model: false\n')
    client = ui(api_keys_file=str(keys))
    client.headers["Authorization"] = "Bearer only-a"
    error = error_of(compare(client), 404)
    assert error["code"] == "model_not_found" and error["param"] == "targets.1.model"


@pytest.mark.parametrize("verdict, param", [
    ({"verdict": "better"}, "winner"),
    ({"verdict": "better", "winner": "C"}, "winner"),
    ({"verdict": "better", "winner": "A", "ranking": ["A", "B"]}, "ranking"),
    ({"verdict": "ranking", "ranking": ["A"]}, "ranking"),
    ({"verdict": "ranking", "ranking": ["A", "A"]}, "ranking"),
    ({"verdict": "ranking", "ranking": ["A", "Z"]}, "ranking.1"),
    ({"verdict": "tie", "winner": "A"}, "winner"),
    ({"verdict": "maybe"}, "verdict"),
    ({"verdict": "better", "winner": 1}, "winner"),
    ({"verdict": "tie", "note": "x"}, "note"),
])
def test_malformed_choices(ui, prefs, verdict, param):
    client = ui()
    started, _ = compared(client)
    assert error_of(judge(client, started["id"], **verdict), 400)["param"] == param
    assert not prefs.exists()
    assert judge(client, started["id"], verdict="tie").status_code == 200  # still judgeable


def test_unknown_judged_and_other_keys_comparisons(ui, prefs, tmp_path_factory):
    keys = tmp_path_factory.mktemp("keys") / "keys.yaml"
    keys.write_text('keys:\n  - key: other\n')
    client = ui(api_keys_file=str(keys))
    assert error_of(judge(client, "cmp-0123", verdict="tie"), 404)["code"] == "comparison_not_found"
    assert error_of(client.post("/ui/api/judgements", json={"verdict": "tie"}), 400)["param"] == \
        "comparison_id"
    started, _ = compared(client)
    other = client.post("/ui/api/judgements", headers={"Authorization": "Bearer other"},
                        json={"comparison_id": started["id"], "verdict": "tie"})
    assert error_of(other, 404)["code"] == "comparison_not_found"
    assert judge(client, started["id"], verdict="tie").status_code == 200
    assert error_of(judge(client, started["id"], verdict="tie"), 409)["code"] == "already_judged"
    assert len(lines(prefs)) == 1


def test_identical_answers_can_only_tie(ui, prefs):
    client = ui(ScriptedEngine(replies={"lora-a": "same", "lora-b": "same"}))
    started, _ = compared(client)
    error = error_of(judge(client, started["id"], verdict="better", winner="A"), 400)
    assert "identical" in error["message"] and "tie" in error["message"]
    assert judge(client, started["id"], verdict="tie").status_code == 200
    assert read_judgements(prefs)[0][0].score == 0.5


def test_a_failed_answer_cannot_be_judged(ui, prefs):
    client = ui(ScriptedEngine(fail=EngineDeadError(), fail_at=1, replies=REPLIES))
    r = compare(client)
    assert r.status_code == 200
    evs = events(r)
    failed = [e for e in evs if e["type"] == "answer_done"]
    assert len(failed) == 2 and all(e["error"]["type"] == "service_unavailable" for e in failed)
    assert evs[-1]["judgeable"] is False
    error = error_of(judge(client, evs[0]["id"], verdict="tie"), 400)
    assert "failed" in error["message"]
    assert not prefs.exists()


def test_an_unwritable_preferences_file_is_a_503_and_the_comparison_stays_judgeable(
        ui, tmp_path_factory):
    blocker = tmp_path_factory.mktemp("disk") / "feedback"
    blocker.write_text("a file where the directory should be")  # fails even as root
    client = ui(preferences_file=str(blocker / "preferences.jsonl"))
    started, _ = compared(client)
    error = error_of(judge(client, started["id"], verdict="tie"), 503)
    assert "preferences file" in error["message"] and str(blocker) not in error["message"]
    blocker.unlink()
    assert judge(client, started["id"], verdict="tie").status_code == 200
    assert len(lines(blocker / "preferences.jsonl")) == 1
