"""A comparison: one prompt answered by 2-4 targets, streamed side by side, kept to be judged.

Each answer is exactly what /v1/chat/completions (or /v1/completions) streams for the same
request: the comparison calls those endpoints' serving functions with the caller's key and reads
their event stream as a client would. The answers stay in memory under an unguessable id, bound
to the key that asked, until they expire; a judgement can only name answers kept here, so
preference data is never about text a browser made up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from vllm.utils.async_utils import merge_async_iterators

from server.auth import Grant
from server.errors import APIError, bad_request
from server.protocol.chat import ChatCompletionRequest
from server.protocol.completions import CompletionRequest
from server.protocol.errors import ErrorInfo
from server.protocol.feedback import (
    AnswerDelta,
    AnswerDone,
    AnswerSlot,
    CompareTarget,
    ComparisonDone,
    ComparisonRequest,
    ComparisonStarted,
)
from server.serving.chat import create_chat_completion
from server.serving.streaming import sse
from server.serving.completions import create_completion
from server.state import ServerState

TTL_SECONDS = 3600
"""How long a comparison can be judged (a person reads, thinks, maybe takes a break)."""
CAPACITY = 1000
"""Most comparisons kept; the oldest go first (bounds memory whatever the TTL)."""

_shuffle = secrets.SystemRandom().shuffle


def target_name(model: str, soft_prompt: str | None) -> str:
    """A target's name in preference data and ratings: `lora`, or `lora+soft` when stacked."""
    return f"{model}+{soft_prompt}" if soft_prompt else model


def target_parts(name: str, base_name: str) -> tuple[str, ...]:
    """The model names inside `target_name(...)`; adapter names cannot hold `+`."""
    head, sep, soft = name.rpartition("+")
    return (head, soft) if sep and head and name != base_name else (name,)


@dataclass
class Answer:
    target: CompareTarget
    text: str = ""
    finish_reason: str | None = None
    error: ErrorInfo | None = None

    @property
    def name(self) -> str:
        return target_name(self.target.model, self.target.soft_prompt)


@dataclass
class Comparison:
    id: str
    owner: str
    """Digest of the API key that created it; only that key may judge it."""
    request: ComparisonRequest
    answers: list[Answer]
    """In the order shown (shuffled when anonymous)."""
    created_at: float = field(default_factory=time.time)
    finished: bool = False
    """Every answer has ended (a client that went away mid-stream leaves it unfinished)."""
    judged: bool = False

    def slots(self) -> list[AnswerSlot]:
        hidden = self.request.anonymous and not self.judged
        return [AnswerSlot(label=label(i), model=None if hidden else a.target.model,
                           soft_prompt=None if hidden else a.target.soft_prompt)
                for i, a in enumerate(self.answers)]


def label(index: int) -> str:
    return "ABCD"[index]


class ComparisonStore:
    """Comparisons by id, each until `ttl` seconds after it was made."""

    def __init__(self, ttl: float = TTL_SECONDS, capacity: int = CAPACITY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.capacity, self._clock = ttl, capacity, clock
        self._items: OrderedDict[str, tuple[float, Comparison]] = OrderedDict()

    def add(self, comparison: Comparison) -> None:
        self._expire()
        self._items[comparison.id] = (self._clock() + self.ttl, comparison)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def get(self, comparison_id: str, owner: str) -> Comparison:
        """The comparison; 404 when unknown, expired, or another key's (alike, as for models)."""
        self._expire()
        item = self._items.get(comparison_id)
        if item is None or not secrets.compare_digest(item[1].owner, owner):
            raise APIError(404, f"no comparison `{comparison_id}`: unknown, or expired (they "
                           f"last {self.ttl / 60:g} minutes); compare again", param="comparison_id",
                           code="comparison_not_found")
        return item[1]

    def _expire(self) -> None:
        now = self._clock()
        while self._items and next(iter(self._items.values()))[0] <= now:
            self._items.popitem(last=False)


def _check(request: ComparisonRequest) -> None:
    if not request.prompt.strip():
        raise bad_request("prompt is empty: write something for the targets to answer",
                          param="prompt")
    seen: set[tuple[str, str | None]] = set()
    for i, t in enumerate(request.targets):
        if (t.model, t.soft_prompt) in seen:
            raise bad_request(f"targets[{i}] repeats an earlier target "
                              f"({target_name(t.model, t.soft_prompt)}); compare different ones",
                              param=f"targets.{i}")
        seen.add((t.model, t.soft_prompt))


# The generation request's field -> the comparison's (the other fields have the same names).
_PARAMS = {"messages": "prompt", "max_completion_tokens": "max_tokens"}


async def _openai_stream(state: ServerState, request: ComparisonRequest, target: CompareTarget,
                         caller: Grant) -> AsyncIterator[str]:
    """The event stream the matching generation endpoint sends for this target; errors on
    admission (unknown model, prompt too long, queue full) are raised here, as the endpoint
    answers them with a status."""
    fields = dict(model=target.model, soft_prompt=target.soft_prompt, stream=True,
                  temperature=request.temperature, top_p=request.top_p,
                  max_tokens=request.max_tokens, seed=request.seed)
    if request.mode == "chat":
        return await create_chat_completion(state, ChatCompletionRequest(
            messages=[{"role": "user", "content": request.prompt}], **fields), caller)
    return await create_completion(state, CompletionRequest(prompt=request.prompt, **fields),
                                   caller)


async def _answer_events(index: int, answer: Answer, stream: AsyncIterator[str],
                         chat: bool) -> AsyncIterator[AnswerDelta | AnswerDone]:
    """Read one OpenAI event stream into `answer`, as delta events for the page."""
    async with contextlib.aclosing(stream):  # a page that leaves aborts the engine request now
        async for event in stream:
            data = event.removeprefix("data: ").strip()
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if "error" in chunk:
                answer.error = ErrorInfo(**chunk["error"])
                break
            for choice in chunk["choices"]:
                text = choice["delta"].get("content") if chat else choice["text"]
                if text:
                    answer.text += text
                    yield AnswerDelta(answer=index, text=text)
                answer.finish_reason = choice.get("finish_reason") or answer.finish_reason
    yield AnswerDone(answer=index, finish_reason=answer.finish_reason, error=answer.error)


async def start_comparison(state: ServerState, store: ComparisonStore, request: ComparisonRequest,
                           caller: Grant, owner: str) -> AsyncIterator[str]:
    """Start every answer (raising the first admission error, 4xx as the API gives it) and
    return the page's event stream; the comparison is kept from now on."""
    _check(request)
    order = list(range(len(request.targets)))
    if request.anonymous:
        _shuffle(order)  # position must not give the target away
    answers = [Answer(request.targets[i]) for i in order]
    # Admitted together, so the engine prefills them in one batch.
    streams = await asyncio.gather(*(_openai_stream(state, request, a.target, caller)
                                     for a in answers), return_exceptions=True)
    for original, stream in sorted(zip(order, streams), key=lambda pair: pair[0]):
        if isinstance(stream, BaseException):
            # The answers that did start are aborted when their streams are collected, as for
            # a client that goes away before reading.
            if isinstance(stream, APIError):
                stream.param = _PARAMS.get(stream.param, stream.param)
                if stream.param in ("model", "soft_prompt"):
                    stream.param = f"targets.{original}.{stream.param}"
            raise stream
    comparison = Comparison(id=f"cmp-{secrets.token_hex(16)}", owner=owner, request=request,
                            answers=answers)
    store.add(comparison)
    chat = request.mode == "chat"

    async def events() -> AsyncIterator[str]:
        yield sse(ComparisonStarted(id=comparison.id, anonymous=request.anonymous,
                                    expires_in=int(store.ttl), answers=comparison.slots()))
        async for _, event in merge_async_iterators(
                *(_answer_events(i, a, s, chat) for i, (a, s) in enumerate(zip(answers, streams)))):
            yield sse(event)
        comparison.finished = True
        yield sse(ComparisonDone(id=comparison.id,
                                 judgeable=all(a.error is None for a in answers)))
        yield "data: [DONE]\n\n"

    return events()
