"""adapter_formats.ratings: the Bradley-Terry fit on the Elo scale, ties as half, bootstrap intervals, and
reading judgements back from a preference file."""

from __future__ import annotations

import json
import math
import random

import pytest

from adapter_formats.ratings import Match, fit, leaderboard, matches_from_row, read_judgements


def simulated(strengths: dict[str, float], n: int, seed: int = 0) -> list[list[Match]]:
    """`n` single-match judgements between random pairs, won with the Elo probability."""
    rng = random.Random(seed)
    names = sorted(strengths)
    out = []
    for _ in range(n):
        a, b = rng.sample(names, 2)
        p = 1 / (1 + 10 ** ((strengths[b] - strengths[a]) / 400))
        out.append([Match(a, b, 1.0 if rng.random() < p else 0.0)])
    return out


def test_maximum_likelihood_matches_the_closed_form():
    # Two models, 3 wins in 4: P = 3/4, so the Elo gap is 400 log10(3).
    ratings = fit([Match("a", "b", 1)] * 3 + [Match("a", "b", 0)], prior=0)
    assert ratings["a"] - ratings["b"] == pytest.approx(400 * math.log10(3))
    assert (ratings["a"] + ratings["b"]) / 2 == pytest.approx(1000)


def test_recovers_the_strengths_that_generated_the_games():
    true = {"strong": 1200, "mid-a": 1000, "mid-b": 1000, "weak": 800}
    table = leaderboard(simulated(true, 3000), rounds=200)
    assert [r.model for r in table][0] == "strong" and table[-1].model == "weak"
    for r in table:
        assert r.rating == pytest.approx(true[r.model], abs=40)
    # 95% intervals: each misses the truth one time in twenty; three of four must hold it.
    assert sum(r.low <= true[r.model] <= r.high for r in table) >= 3
    assert sum(r.rating for r in table) / len(table) == pytest.approx(1000)


def test_ties_count_half():
    # Two ties carry the same evidence as one win each way.
    one_each = [Match("a", "b", 1), Match("a", "b", 0)]
    assert fit([Match("a", "b", 0.5)] * 2) == pytest.approx(fit(one_each))
    assert fit([Match("a", "b", 0.5)] * 3) == pytest.approx({"a": 1000, "b": 1000})
    judgements = [[Match("a", "b", 0.5)], [Match("a", "b", 1)]]
    table = {r.model: r for r in leaderboard(judgements, rounds=50)}
    assert (table["a"].wins, table["a"].ties, table["a"].losses) == (1, 1, 0)
    assert (table["b"].wins, table["b"].ties, table["b"].losses) == (0, 1, 1)


def test_order_and_sides_do_not_matter():
    games = [m for j in simulated({"a": 1100, "b": 1000, "c": 900}, 60, seed=3) for m in j]
    shuffled = games[:]
    random.Random(1).shuffle(shuffled)
    flipped = [Match(m.b, m.a, 1 - m.score) for m in games]
    assert fit(shuffled) == pytest.approx(fit(games))
    assert fit(flipped) == pytest.approx(fit(games))


def test_a_clean_sweep_stays_finite():
    ratings = fit([Match("a", "b", 1)] * 10)
    assert all(math.isfinite(r) for r in ratings.values())
    assert 1200 < ratings["a"] < 1500 and ratings["b"] == pytest.approx(2000 - ratings["a"])


def test_bootstrap_is_reproducible_and_narrows_with_data():
    true = {"a": 1100, "b": 1000, "c": 900}
    few, many = simulated(true, 40, seed=5), simulated(true, 800, seed=5)
    assert leaderboard(few, rounds=100, seed=7) == leaderboard(few, rounds=100, seed=7)
    assert leaderboard(few, rounds=100, seed=7) != leaderboard(few, rounds=100, seed=8)
    width = {n: {r.model: r.high - r.low for r in leaderboard(js, rounds=200)}
             for n, js in (("few", few), ("many", many))}
    assert all(width["many"][m] < width["few"][m] / 2 for m in true)
    for r in leaderboard(few, rounds=200):
        assert r.low <= r.rating <= r.high


def test_bootstrap_resamples_whole_judgements():
    # One ranking of three answers (three matches) repeated: every resample keeps its shape, so
    # the order never flips and the intervals do not cross.
    ranking = [Match("a", "b", 1), Match("a", "c", 1), Match("b", "c", 1)]
    table = leaderboard([ranking] * 5, rounds=100)
    assert [r.model for r in table] == ["a", "b", "c"]
    assert table[0].low > table[1].high and table[1].low > table[2].high


def test_empty():
    assert fit([]) == {} and leaderboard([]) == []


def test_matches_from_preference_rows():
    assert matches_from_row({"prompt": "p", "chosen": "x", "rejected": "y",
                             "chosen_model": "a", "rejected_model": "b"}) == [Match("a", "b", 1.0)]
    ranking = matches_from_row({"prompt": "p", "responses": ["x", "y", "z"],
                                "models": ["a", "b", "c"]})
    assert ranking == [Match("a", "b", 1), Match("a", "c", 1), Match("b", "c", 1)]
    tie = matches_from_row({"prompt": "p", "responses": ["x", "y"], "models": ["a", "b"],
                            "verdict": "tie"})
    both_bad = matches_from_row({"prompt": "p", "responses": ["x", "y"], "models": ["a", "b"],
                                 "verdict": "both_bad"})
    assert tie == both_bad == [Match("a", "b", 0.5)]
    assert matches_from_row({"prompt": "p", "chosen": "x", "rejected": "y"}) == []  # no model names


def test_read_judgements_groups_rows_of_one_comparison(tmp_path):
    rows = [
        {"comparison_id": "c1", "chosen_model": "a", "rejected_model": "b"},
        {"comparison_id": "c1", "chosen_model": "a", "rejected_model": "c"},
        {"comparison_id": "c2", "responses": ["x", "y"], "models": ["b", "c"], "verdict": "tie"},
        {"prompt": "hand-made", "chosen": "x", "rejected": "y"},
        {"chosen_model": "c", "rejected_model": "b"},  # no id: a judgement of its own
    ]
    path = tmp_path / "preferences.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"truncated": \n[1, 2]\n')
    assert read_judgements(path) == [[Match("a", "b", 1), Match("a", "c", 1)],
                                     [Match("b", "c", 0.5)], [Match("c", "b", 1)]]
    assert read_judgements(tmp_path / "missing.jsonl") == []
