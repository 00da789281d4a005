"""The browser page's API (/ui/api, not in OpenAI): comparisons, judgements, the leaderboard.

A comparison runs one prompt on 2-4 targets and streams their answers as server-sent events
(`ComparisonStarted`, then `AnswerDelta`s and one `AnswerDone` per answer, then
`ComparisonDone`); a judgement names the comparison and the verdict on its answers, by the
labels A, B, ... the comparison gave them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from server.protocol.common import OpenAIModel, Temperature
from server.protocol.errors import ErrorInfo


class CompareTarget(OpenAIModel):
    model: str
    """The base model or an adapter, as `model` in /v1/chat/completions."""
    soft_prompt: str | None = None
    """A soft prompt stacked on `model` (as the `soft_prompt` extension field)."""


class ComparisonRequest(OpenAIModel):
    mode: Literal["chat", "completion"] = "chat"
    """`chat`: the prompt is one user message (/v1/chat/completions); `completion`: raw text
    the model continues (/v1/completions)."""
    prompt: Annotated[str, Field(min_length=1)]
    targets: Annotated[list[CompareTarget], Field(min_length=2, max_length=4)]
    """What answers: 2 to 4 different targets."""
    temperature: Temperature = 1.0
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    max_tokens: Annotated[int, Field(ge=1)] = 128
    seed: int | None = None
    """Same seed for every target, so the answers differ by the weights alone."""
    anonymous: bool = True
    """Hide which target wrote which answer, in shuffled order, until the judgement."""


class AnswerSlot(BaseModel):
    label: str
    """A, B, C, D: the answer's place on the page."""
    model: str | None
    """None while the comparison is anonymous and not judged."""
    soft_prompt: str | None = None


class ComparisonStarted(BaseModel):
    type: Literal["comparison"] = "comparison"
    id: str
    """Name it in the judgement; it expires `expires_in` seconds from now."""
    anonymous: bool
    expires_in: int
    answers: list[AnswerSlot]


class AnswerDelta(BaseModel):
    type: Literal["delta"] = "delta"
    answer: int
    """Index into `answers`."""
    text: str


class AnswerDone(BaseModel):
    type: Literal["answer_done"] = "answer_done"
    answer: int
    finish_reason: str | None
    error: ErrorInfo | None = None
    """Set when this answer failed mid-stream (the comparison can then not be judged)."""


class ComparisonDone(BaseModel):
    type: Literal["done"] = "done"
    id: str
    judgeable: bool


class JudgementRequest(OpenAIModel):
    comparison_id: str
    verdict: Literal["better", "ranking", "tie", "both_bad"]
    """`better`: `winner` beat every other answer; `ranking`: the order of all answers, best
    first; `tie`: equally good; `both_bad`: none acceptable (a tie for ratings, no training
    pair)."""
    winner: str | None = None
    """The better answer's label (verdict `better`)."""
    ranking: list[str] | None = None
    """Every answer's label, best first (verdict `ranking`)."""


class Judgement(BaseModel):
    object: Literal["judgement"] = "judgement"
    comparison_id: str
    verdict: str
    answers: list[AnswerSlot]
    """Who wrote which answer, now revealed."""
    pairs: int
    """Preference pairs the judgement adds for reward / DPO training."""


class LeaderboardEntry(BaseModel):
    model: str
    """A target: `model`, or `model+soft_prompt` for a stacked soft prompt."""
    rating: float
    ci_low: float
    ci_high: float
    games: int
    wins: int
    ties: int
    losses: int


class Leaderboard(BaseModel):
    object: Literal["leaderboard"] = "leaderboard"
    method: str
    judgements: int
    confidence: float
    rounds: int
    """Bootstrap resamples behind the intervals."""
    data: list[LeaderboardEntry] = Field(default_factory=list)
