"""Elo ratings from pairwise judgements: Bradley-Terry fit, bootstrap confidence intervals.

    from adapter_formats.ratings import leaderboard, read_judgements
    for r in leaderboard(read_judgements("feedback/preferences.jsonl")):
        print(f"{r.model:24} {r.rating:6.0f}  [{r.low:.0f}, {r.high:.0f}]  {r.games} games")

Method: Bradley-Terry, fitted by maximum a posteriori (Newton's method), reported on the Elo
scale (400 points = 10:1 odds, mean 1000). The model is the one Elo assumes, P(a beats b) =
σ(θa - θb), but fitted to all judgements at once instead of updated one judgement at a time:
sequential Elo depends on the order the judgements arrived in and on a K-factor, and with the
few hundred judgements a team collects by hand both choices move the ratings by more than the
differences being measured (Chatbot Arena moved from sequential Elo to this fit for the same
reason). A tie counts half a win for each side (the likelihood takes fractional outcomes).

A weak Gaussian prior on θ (standard deviation ≈ 550 Elo points) keeps ratings finite when a
model has won or lost every one of its games, which is common with few judgements (the maximum
likelihood estimate is then infinite); with dozens of games per model it moves ratings little.

Confidence intervals: the percentile bootstrap over judgements (a judgement is every match one
person's verdict implied: a ranking of k answers is k(k-1)/2 matches that stay together),
refitted `rounds` times with a fixed seed, so the same file always gives the same table.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ELO_SCALE = 400 / math.log(10)  # Elo points per unit of log-odds
ELO_MEAN = 1000.0
PRIOR = 0.1
"""Precision of the Gaussian prior on log-odds strengths (stdev 1/sqrt(0.1) ≈ 3.2 ≈ 550 Elo)."""
NO_PREFERENCE = ("tie", "both_bad")
"""Verdicts that say no answer was better (both_bad counts as a tie, as Chatbot Arena counts it)."""


@dataclass(frozen=True)
class Match:
    """One comparison of two models; `score` is a's result: 1 win, 0.5 tie, 0 loss."""

    a: str
    b: str
    score: float


@dataclass(frozen=True)
class Rating:
    model: str
    rating: float
    """Elo-scale strength (mean of the rated models: 1000)."""
    low: float
    """Lower end of the bootstrap confidence interval."""
    high: float
    games: int
    wins: int
    ties: int
    losses: int


def _index(matches: Iterable[Match]) -> dict[str, int]:
    """Model name -> row of the matrices, in order of first appearance."""
    names = dict.fromkeys(name for m in matches for name in (m.a, m.b))
    return {name: i for i, name in enumerate(names)}


def _matrices(matches: Iterable[Match], index: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """(S, N), each (M, M): S[i, j] = i's score against j, N[i, j] = games between i and j."""
    m = len(index)
    score, games = np.zeros((m, m)), np.zeros((m, m))
    for match in matches:
        i, j = index[match.a], index[match.b]
        score[i, j] += match.score
        score[j, i] += 1.0 - match.score
        games[i, j] += 1
        games[j, i] += 1
    return score, games


def _fit(score: np.ndarray, games: np.ndarray, prior: float) -> np.ndarray:
    """MAP log-odds strengths θ (M,) of the Bradley-Terry model, by Newton's method.

    The log posterior Σ_ij S_ij log σ(θi - θj) - prior/2 |θ|² is concave (strictly, with a
    prior), so Newton converges in a few steps. Its gradient sums to -prior Σθ over the models
    that played, so at the optimum their θ sum to 0 (the ratings are centred by construction);
    a model without games stays at 0.
    """
    m = score.shape[0]
    theta = np.zeros(m)
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(theta[None, :] - theta[:, None]))  # p[i, j] = σ(θi - θj)
        gradient = (score - games * p).sum(axis=1) - prior * theta
        w = games * p * p.T  # curvature of each pair's term
        hessian = w - np.diag(w.sum(axis=1)) - prior * np.eye(m)
        # Least squares: without a prior the Hessian is singular (adding a constant to every θ
        # changes nothing); the minimum-norm step leaves the mean where it is.
        step = np.linalg.lstsq(hessian, gradient, rcond=None)[0]
        theta -= step
        if np.abs(step).max() < 1e-10:
            break
    return theta


def fit(matches: Sequence[Match], prior: float = PRIOR) -> dict[str, float]:
    """Elo-scale rating of every model in `matches` (their mean: 1000).

    prior=0 gives the plain maximum-likelihood fit (finite only when every model has both won
    and lost, counting ties as half of each).
    """
    index = _index(matches)
    if not index:
        return {}
    theta = _fit(*_matrices(matches, index), prior)
    if prior == 0:
        theta = theta - theta.mean()  # without a prior only differences are determined
    return {name: float(ELO_MEAN + ELO_SCALE * theta[i]) for name, i in index.items()}


def leaderboard(judgements: Sequence[Sequence[Match]], *, rounds: int = 1000,
                confidence: float = 0.95, seed: int = 0, prior: float = PRIOR) -> list[Rating]:
    """Ratings with bootstrap intervals, best first; a judgement is the matches of one verdict."""
    matches = [m for judgement in judgements for m in judgement]
    index = _index(matches)
    if not index:
        return []
    # Per judgement (J, M, M) score and game counts; a bootstrap round is a weighted sum of them,
    # the weights being how often each judgement was drawn.
    per_judgement = [_matrices(j, index) for j in judgements]
    scores = np.stack([s for s, _ in per_judgement])
    games = np.stack([g for _, g in per_judgement])
    point = _fit(scores.sum(axis=0), games.sum(axis=0), prior)
    rng = np.random.default_rng(seed)
    draws = np.full((rounds, len(index)), np.nan)
    for r in range(rounds):
        counts = rng.multinomial(len(judgements), np.full(len(judgements), 1 / len(judgements)))
        s = np.tensordot(counts, scores, axes=1)
        g = np.tensordot(counts, games, axes=1)
        played = g.sum(axis=1) > 0
        draws[r, played] = _fit(s, g, prior)[played]  # a model not drawn has no rating this round
    tail = (1 - confidence) / 2 * 100
    low, high = np.nanpercentile(draws, [tail, 100 - tail], axis=0)
    results = []
    for name, i in index.items():
        mine = [(m.score if m.a == name else 1 - m.score) for m in matches if name in (m.a, m.b)]
        results.append(Rating(
            model=name, rating=float(ELO_MEAN + ELO_SCALE * point[i]),
            low=float(ELO_MEAN + ELO_SCALE * low[i]), high=float(ELO_MEAN + ELO_SCALE * high[i]),
            games=len(mine), wins=sum(s == 1 for s in mine), ties=sum(s == 0.5 for s in mine),
            losses=sum(s == 0 for s in mine)))
    return sorted(results, key=lambda r: -r.rating)


def matches_from_row(row: dict) -> list[Match]:
    """The matches in one preference row that names its models (rows that do not: none).

    Rows as `adapter_formats/preferences.py` reads them, with the models written beside:
        {"chosen": ..., "rejected": ..., "chosen_model": A, "rejected_model": B}   A beat B
        {"responses": [best, ..., worst], "models": [A, ..., Z]}                 a ranking
        {"responses": [...], "models": [...], "verdict": "tie" | "both_bad"}     all tied
    """
    if isinstance(row.get("chosen_model"), str) and isinstance(row.get("rejected_model"), str):
        return [Match(row["chosen_model"], row["rejected_model"], 1.0)]
    models = row.get("models")
    if not (isinstance(models, list) and all(isinstance(m, str) for m in models)):
        return []
    score = 0.5 if row.get("verdict") in NO_PREFERENCE else 1.0
    return [Match(models[i], models[j], score)
            for i in range(len(models)) for j in range(i + 1, len(models))]


def read_judgements(path: str | Path) -> list[list[Match]]:
    """The judgements in a preference JSONL file: rows sharing a `comparison_id` form one (a
    "better than each of the others" verdict is written as one row per pair); a missing file or
    an unreadable line contributes nothing (the file is appended to while it is read)."""
    path = Path(path)
    if not path.is_file():
        return []
    groups: dict[object, list[Match]] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(row, dict):
                continue
            found = matches_from_row(row)
            if found:
                key = row.get("comparison_id")
                key = key if isinstance(key, str) else ("line", number)
                groups.setdefault(key, []).extend(found)
    return list(groups.values())
