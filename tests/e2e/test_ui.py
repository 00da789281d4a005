"""The /ui page in a real browser (headless Chromium, driven by Playwright) on the session server,
then `python -m training reward` on the judgements it recorded.

The browser flow: open /ui, enter the key, see the adapters, compare two targets (one a LoRA
with a soft prompt stacked), judge by keyboard, find the line in the preferences file, see the
leaderboard. It saves a screenshot of each view: to docs/ui/ with UPDATE_SCREENSHOTS=1 (so a
plain test run leaves the committed pictures alone), else beside the session's other files.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from adapter_formats.ratings import read_judgements
from tests.conftest import API_KEY
from training.__main__ import main as training_main
from training.rlhf.preferences import read_preferences

DOCS = Path(__file__).resolve().parents[2] / "docs" / "ui"
LAPTOP = {"width": 1280, "height": 800}
GENERATION_TIMEOUT_MS = 180_000  # a 2-core machine shared with the rest of the suite


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        # No skip: the set-up (make test / make serve) installs it, so its absence is a failure.
        pytest.fail("no chromium on PATH: `make test` installs Debian's (apt-get install chromium)")
    with sync_playwright() as playwright:
        # --no-sandbox: Chromium refuses to sandbox itself as root, which the test machines are.
        launched = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        launched.close()


def row_of(table, name: str):
    """The table row whose header cell is exactly `name`."""
    header = table.page.get_by_role("rowheader", name=name, exact=True)
    return table.locator("tr").filter(has=header)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def sse_data(response) -> list[dict]:
    return [json.loads(line[len("data: "):]) for line in response.iter_lines()
            if line.startswith("data: ") and line != "data: [DONE]"]


def test_compare_judge_and_rank_in_the_browser(server, browser, tmp_path):
    shots = DOCS if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    before = len(lines(server.preferences_file))
    page = browser.new_page(viewport=LAPTOP)
    page.goto(server.url + "/ui")

    # The page loads without a key, asks for one and puts the focus in its field, which comes
    # right after the skip link.
    status = page.get_by_role("status")
    expect(status).to_contain_text("Enter your API key")
    expect(page.get_by_label("API key")).to_be_focused()
    page.keyboard.press("Shift+Tab")
    expect(page.get_by_role("link", name="Skip to the content")).to_be_focused()
    page.keyboard.press("Tab")
    page.keyboard.type(API_KEY)
    page.keyboard.press("Enter")

    # Adapters: every served model with its kind.
    table = page.locator("#models-table tbody")
    expect(row_of(table, "lora-a")).to_contain_text("LoRA")
    expect(row_of(table, "prompt-a")).to_contain_text("soft prompt")
    expect(row_of(table, "base")).to_contain_text("base model")
    assert page.evaluate("sessionStorage.getItem('adapter-serve.api-key')") == API_KEY
    page.screenshot(path=shots / "adapters.png")

    # Compare: lora-a against lora-b with prompt-a stacked, anonymised (the default).
    page.get_by_role("link", name="Compare and judge").click()
    expect(page.get_by_role("heading", name="Compare and judge")).to_be_focused()
    page.get_by_label("Prompt", exact=True).fill("Write one line about the sea.")
    page.get_by_label("Target 1", exact=True).select_option("lora-a")
    page.get_by_label("Target 2", exact=True).select_option("lora-b")
    page.locator("#target-2-soft").select_option("prompt-a")
    page.get_by_label("Temperature").fill("0")
    page.get_by_label("Max tokens").fill("12")
    page.get_by_label("Seed").fill("7")
    expect(page.get_by_label("Anonymised")).to_be_checked()
    # Every control has a label (the accessible name screen readers announce).
    unlabelled = page.evaluate("""[...document.querySelectorAll('input, select, textarea')]
        .filter((e) => !e.labels || e.labels.length === 0).map((e) => e.id)""")
    assert unlabelled == []
    page.get_by_role("button", name="Compare", exact=True).click()

    expect(status).to_contain_text("judge them below", timeout=GENERATION_TIMEOUT_MS)
    answers = page.locator("article.answer")
    expect(answers).to_have_count(2)
    texts = [answers.nth(i).locator(".text").inner_text() for i in range(2)]
    assert all(t.strip() for t in texts)
    for i in range(2):
        expect(answers.nth(i).locator(".who")).to_have_text("(model hidden)")
    expect(page.locator("#answers")).not_to_contain_text("lora-")
    page.screenshot(path=shots / "compare.png", full_page=True)

    # Judge by keyboard: Space picks "A is better", Tab reaches the button, Enter records it.
    page.get_by_label("A is better").focus()
    page.keyboard.press("Space")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Record judgement")).to_be_focused()
    page.keyboard.press("Enter")
    expect(status).to_contain_text("Judgement recorded")
    revealed = [answers.nth(i).locator(".who").inner_text().removeprefix("— ") for i in range(2)]
    assert sorted(revealed) == ["lora-a", "lora-b + prompt-a"]
    page.screenshot(path=shots / "judged.png", full_page=True)

    # The new line, in the format training reads, names the models and the answers shown.
    rows = lines(server.preferences_file)
    assert len(rows) == before + 1
    row = rows[-1]
    name = {"lora-a": "lora-a", "lora-b + prompt-a": "lora-b+prompt-a"}
    assert (row["chosen_model"], row["rejected_model"]) == (name[revealed[0]], name[revealed[1]])
    assert (row["chosen"], row["rejected"]) == (texts[0], texts[1])
    assert row["prompt"] == [{"role": "user", "content": "Write one line about the sea."}]
    assert row["sampling"] == {"temperature": 0.0, "top_p": 1.0, "max_tokens": 12, "seed": 7}
    assert row["anonymous"] is True and row["verdict"] == "better"
    pairs, _ = read_preferences(server.preferences_file)
    assert (pairs[-1].chosen, pairs[-1].rejected) == (texts[0], texts[1])

    # The leaderboard now rates both, from every judgement in the file.
    page.get_by_role("link", name="Leaderboard").click()
    ratings = page.locator("#ratings-table tbody")
    for model in name.values():
        expect(row_of(ratings, model)).to_be_visible()
    judged = len(read_judgements(server.preferences_file))
    expect(page.locator("#leaderboard-summary")).to_have_text(
        re.compile(rf"^{judged} judgements?\. "))
    expect(page.locator("#ratings-plot svg circle")).to_have_count(ratings.locator("tr").count())
    page.screenshot(path=shots / "leaderboard.png", full_page=True)
    page.close()


def test_a_comparison_answers_as_the_chat_endpoint_does(server, http, client):
    body = {"prompt": "Name three colours.", "temperature": 0, "max_tokens": 10, "seed": 1,
            "anonymous": False, "targets": [{"model": "base"}, {"model": "lora-a"},
                                            {"model": "lora-a", "soft_prompt": "prompt-a"}]}
    with http.stream("POST", "/ui/api/comparisons", json=body) as r:
        assert r.status_code == 200
        events = sse_data(r)
    texts = ["", "", ""]
    for e in events:
        if e["type"] == "delta":
            texts[e["answer"]] += e["text"]
    assert events[-1]["judgeable"] is True
    for target, text in zip(body["targets"], texts):
        direct = client.chat.completions.create(
            model=target["model"], messages=[{"role": "user", "content": body["prompt"]}],
            temperature=0, max_tokens=10, seed=1,
            extra_body={"soft_prompt": target.get("soft_prompt")})
        assert direct.choices[0].message.content == text


def test_bad_input_on_the_real_server(server, http):
    targets = [{"model": "lora-a"}, {"model": "lora-b"}]
    r = http.post("/ui/api/comparisons", json={"prompt": "hi", "targets": [
        {"model": "lora-a"}, {"model": "no-such-adapter"}]})
    assert r.status_code == 404 and r.json()["error"]["param"] == "targets.1.model"
    r = http.post("/ui/api/comparisons", json={"prompt": " ", "targets": targets})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
    # key-loras may not use the base model: to it the base is as unknown as a missing one.
    r = http.post("/ui/api/comparisons", json={"prompt": "hi", "targets": [
        {"model": "lora-a"}, {"model": "base"}]}, headers={"Authorization": "Bearer key-loras"})
    assert r.status_code == 404
    r = http.post("/ui/api/judgements", json={"comparison_id": "cmp-missing", "verdict": "tie"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "comparison_not_found"
    r = http.post("/ui/api/judgements", json={"comparison_id": "cmp-missing", "verdict": "best"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "verdict"


def test_reward_model_trains_on_the_recorded_judgements(server, http, tiny, tmp_path):
    """The loop's training step: judgements made through the server -> `training reward`."""
    for prompt in ("Say hello.", "Count to three.", "Name a fruit.", "Describe rain."):
        body = {"prompt": prompt, "temperature": 0, "max_tokens": 8, "anonymous": False,
                "targets": [{"model": "lora-a"}, {"model": "lora-b"}]}
        with http.stream("POST", "/ui/api/comparisons", json=body) as r:
            comparison_id = sse_data(r)[0]["id"]
        r = http.post("/ui/api/judgements", json={"comparison_id": comparison_id,
                                                  "verdict": "better", "winner": "A"})
        assert r.status_code == 200, r.text
    out = tmp_path / "feedback-reward"
    code = training_main([
        "reward", "--config", "training/recipes/rlhf/reward-feedback.yaml",
        "--base", str(tiny["base"]), "--train", str(server.preferences_file),
        "--output-dir", str(out), "--max-steps", "3", "--batch-size", "4",
        "--test-fraction", "0.25"])
    assert code == 0
    run = json.loads((out / "run.json").read_text())
    assert run["training"]["steps"] == 3 and math.isfinite(run["training"]["train_loss"])
    assert run["data"]["train_pairs"] >= 3
    assert (out / "reward" / "adapter_model.safetensors").is_file()
