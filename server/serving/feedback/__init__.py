"""Human feedback from the browser page: comparisons, judgements as preference data, ratings.

    comparisons.py     one prompt, 2-4 targets, answers generated here and kept (TTL) to be judged
    judgements.py      a verdict on a comparison -> preference rows (the format training reads)
    preference_log.py  the append-only JSONL file those rows go to
    ratings.py         the Elo leaderboard of the judged targets, from that file
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from server.serving.feedback.comparisons import ComparisonStore
from server.serving.feedback.preference_log import PreferenceLog
from server.serving.feedback.ratings import Ratings


@dataclass
class Feedback:
    """What the page's API keeps between requests (one per server)."""

    comparisons: ComparisonStore
    log: PreferenceLog
    ratings: Ratings

    @classmethod
    def at(cls, preferences_file: str | Path) -> Feedback:
        log = PreferenceLog(Path(preferences_file).resolve())
        return cls(comparisons=ComparisonStore(), log=log, ratings=Ratings(log.path))
