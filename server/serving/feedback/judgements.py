"""A judgement: a verdict on a comparison's answers, appended as preference rows.

The rows are in the format `python -m training reward` and `dpo` read
(adapter_formats/preferences.py), each checked with that reader before it is written:

    better (2 answers)   {"prompt", "chosen", "rejected", "chosen_model", "rejected_model", ...}
    better (3-4)         one such row per answer the winner beat (a best-of-k is no full order)
    ranking              {"prompt", "responses": [best, ..., worst], "models": [...], ...}
    tie, both_bad        {"prompt", "responses": [as shown], "models": [...], "verdict", ...}

and every row also carries `comparison_id`, `verdict`, `mode`, `sampling`, `anonymous` and
`judged_at`. A chat comparison's prompt is written as chat turns (training renders it with the
chat template, as the server did); a completion comparison's as text, which training must read
with `data.template: raw` to see what the targets saw.
"""

from __future__ import annotations

import asyncio
import datetime
import logging

from adapter_formats.preferences import pairs_from_row
from adapter_formats.rows import BadRow
from server.errors import APIError, bad_request
from server.protocol.feedback import Judgement, JudgementRequest
from server.serving.feedback import Feedback
from server.serving.feedback.comparisons import Comparison, label

log = logging.getLogger("server")

_CHOICE = {"better": "winner", "ranking": "ranking"}  # verdict -> the field holding its choice


def _index(comparison: Comparison, given: str, param: str) -> int:
    labels = [label(i) for i in range(len(comparison.answers))]
    if given not in labels:
        raise bad_request(f"{param}: `{given}` is not an answer of this comparison "
                          f"(its answers are {', '.join(labels)})", param=param)
    return labels.index(given)


def _order(comparison: Comparison, request: JudgementRequest) -> list[int] | None:
    """Answer indices the verdict puts in order: [winner] for `better`, all of them best first
    for `ranking`, None for a tie; 400 for a choice that does not fit the verdict."""
    k = len(comparison.answers)
    for name in ("winner", "ranking"):
        if name != _CHOICE.get(request.verdict) and getattr(request, name) is not None:
            raise bad_request(f"{name} does not go with verdict `{request.verdict}`", param=name)
    if request.verdict == "better":
        if request.winner is None:
            raise bad_request("verdict `better` needs `winner`, the better answer's label",
                              param="winner")
        return [_index(comparison, request.winner, "winner")]
    if request.verdict == "ranking":
        ranking = request.ranking or []
        order = [_index(comparison, given, f"ranking.{i}") for i, given in enumerate(ranking)]
        if sorted(order) != list(range(k)):
            raise bad_request(f"ranking must name each of the {k} answers once, best first",
                              param="ranking")
        return order
    return None


def preference_rows(comparison: Comparison, request: JudgementRequest,
                    now: datetime.datetime) -> list[dict]:
    """The rows a verdict writes (see the module docstring); 400 for a verdict they cannot hold."""
    c = comparison
    prompt = [{"role": "user", "content": c.request.prompt}] if c.request.mode == "chat" \
        else c.request.prompt
    extras = {
        "comparison_id": c.id, "verdict": request.verdict, "mode": c.request.mode,
        "sampling": {"temperature": c.request.temperature, "top_p": c.request.top_p,
                     "max_tokens": c.request.max_tokens, "seed": c.request.seed},
        "anonymous": c.request.anonymous,
        "judged_at": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    answers = c.answers
    order = _order(c, request)
    if order is None:
        rows = [{"prompt": prompt, "responses": [a.text for a in answers],
                 "models": [a.name for a in answers], **extras}]
    elif request.verdict == "ranking":
        rows = [{"prompt": prompt, "responses": [answers[i].text for i in order],
                 "models": [answers[i].name for i in order], **extras}]
    else:
        winner = answers[order[0]]
        rows = [{"prompt": prompt, "chosen": winner.text, "rejected": other.text,
                 "chosen_model": winner.name, "rejected_model": other.name, **extras}
                for other in answers if other is not winner]
    for row in rows:
        try:
            pairs_from_row(row, f"comparison {c.id}")
        except BadRow as exc:
            # Identical or empty answers: nothing a reward model could learn from.
            raise bad_request(f"this verdict cannot be training data: {exc.reason}; judge it "
                              "`tie` or `both_bad` instead", param="verdict") from exc
    return rows


async def record_judgement(feedback: Feedback, request: JudgementRequest, owner: str) -> Judgement:
    comparison = feedback.comparisons.get(request.comparison_id, owner)
    if comparison.judged:
        raise APIError(409, f"comparison `{comparison.id}` is already judged",
                       param="comparison_id", code="already_judged")
    if not comparison.finished:
        raise bad_request("this comparison's answers are not complete (still streaming, or the "
                          "page left before they ended); compare again", param="comparison_id")
    failed = [label(i) for i, a in enumerate(comparison.answers) if a.error is not None]
    if failed:
        raise bad_request(f"answer {', '.join(failed)} failed, so there is nothing to judge; "
                          "compare again", param="comparison_id")
    rows = preference_rows(comparison, request, datetime.datetime.now(datetime.UTC))
    comparison.judged = True  # before the write: a second click is a 409, not a second line
    try:
        await asyncio.to_thread(feedback.log.append, rows)
    except OSError as exc:
        comparison.judged = False
        log.error("judgement %s not recorded: %s", comparison.id, exc)
        raise APIError(503, "the judgement could not be written to the preferences file; the "
                       "server log has the details") from exc
    return Judgement(comparison_id=comparison.id, verdict=request.verdict,
                     answers=comparison.slots(),
                     pairs=sum(len(pairs_from_row(r, "")) for r in rows))
