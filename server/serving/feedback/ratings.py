"""The leaderboard: Elo ratings of the judged targets, from the preference file
(adapter_formats/ratings.py).

The file is the record (judgements from earlier runs, other replicas or a hand-made file
count alike); the fit and its bootstrap are redone only when the file has changed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from adapter_formats.ratings import leaderboard, read_judgements
from server.protocol.feedback import Leaderboard, LeaderboardEntry

ROUNDS = 1000
CONFIDENCE = 0.95
SEED = 0


class Ratings:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None  # (mtime_ns, size) of the file last rated
        self._table = Leaderboard(method="", judgements=0, confidence=CONFIDENCE, rounds=ROUNDS)
        self._lock = asyncio.Lock()

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size

    def _compute(self) -> Leaderboard:
        judgements = read_judgements(self.path)
        ratings = leaderboard(judgements, rounds=ROUNDS, confidence=CONFIDENCE, seed=SEED)
        return Leaderboard(
            method="Bradley-Terry (MAP), Elo scale, percentile bootstrap over judgements",
            judgements=len(judgements), confidence=CONFIDENCE, rounds=ROUNDS,
            data=[LeaderboardEntry(model=r.model, rating=r.rating, ci_low=r.low, ci_high=r.high,
                                   games=r.games, wins=r.wins, ties=r.ties, losses=r.losses)
                  for r in ratings])

    async def table(self, visible: Callable[[str], bool]) -> Leaderboard:
        """The leaderboard, with the rows of targets `visible` accepts."""
        async with self._lock:
            stamp = await asyncio.to_thread(self._stat)
            if stamp != self._stamp or not self._table.method:
                self._table = await asyncio.to_thread(self._compute)
                self._stamp = stamp
        table = self._table
        return table.model_copy(update={"data": [e for e in table.data if visible(e.model)]})
