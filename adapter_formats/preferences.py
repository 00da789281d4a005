"""Preference rows: one JSON object per line -> (prompt, chosen, rejected) pairs.

Row forms:
    {"prompt": "...", "chosen": "...", "rejected": "..."}             a labelled pair
    {"prompt": "...", "responses": ["best", "next", ..., "worst"]}    a ranking: every (better, worse)
                                                                      pair, K·(K-1)/2 of them (InstructGPT)
    {"prompt": "...", "responses": [...], "verdict": "tie"}           judged, none better ("tie" or
                                                                      "both_bad"): no pair (Elo reads it)
Other fields are kept for other readers and ignored here: the browser's judgements
(server/serving/feedback) add the models, sampling, comparison id and time; adapter_formats/ratings.py
rates the models from them.
`prompt` may be chat-form: a list of {"role", "content"} turns ending with a user turn; a
response may be a string or [{"role": "assistant", "content": "..."}]. Bad rows raise BadRow
naming file:line.

Training reads files of these rows (`python -m training reward`, `dpo`, ...:
training/rlhf/preferences.py, which renders the prompts); the server's feedback page checks every
row it appends with `pairs_from_row` before writing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapter_formats.ratings import NO_PREFERENCE
from adapter_formats.rows import BadRow


@dataclass(frozen=True)
class PreferencePair:
    where: str
    """`file:line` of the row the pair came from."""
    prompt: str | tuple[dict, ...]
    """Plain text, or chat turns."""
    chosen: str
    rejected: str


def _response(value: Any, field: str) -> str:
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        if value[0].get("role") != "assistant":
            raise ValueError(f"`{field}` as a message must have role assistant")
        value = value[0].get("content")
    if not isinstance(value, str):
        raise ValueError(f"`{field}` must be a string or one assistant message, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"`{field}` is empty")
    return value


def _prompt(value: Any) -> str | tuple[dict, ...]:
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("`prompt` is empty")
        return value
    if isinstance(value, list) and value:
        for turn in value:
            if not (isinstance(turn, dict) and turn.get("role") in ("system", "user", "assistant")
                    and isinstance(turn.get("content"), str)):
                raise ValueError("chat `prompt` turns must be {role: system|user|assistant, content: string}")
        if value[-1]["role"] != "user":
            raise ValueError("a chat `prompt` must end with a user turn")
        return tuple(value)
    raise ValueError("`prompt` must be a non-empty string or a list of chat turns")


def pairs_from_row(row: Any, where: str) -> list[PreferencePair]:
    """The preference pairs in one parsed row; BadRow if it is malformed."""
    try:
        if not isinstance(row, dict):
            raise ValueError("a row must be a JSON object")
        if "prompt" not in row:
            raise ValueError("missing `prompt`")
        prompt = _prompt(row["prompt"])
        if row.get("verdict") in NO_PREFERENCE:
            responses = row.get("responses")
            if not isinstance(responses, list) or len(responses) < 2:
                raise ValueError("a `verdict` without preference needs `responses`, the answers judged")
            for i, r in enumerate(responses):
                _response(r, f"responses[{i}]")
            return []
        if "responses" in row:
            ranked = row["responses"]
            if not isinstance(ranked, list) or len(ranked) < 2:
                raise ValueError("`responses` must be a list of at least 2 responses, best first")
            texts = [_response(r, f"responses[{i}]") for i, r in enumerate(ranked)]
            if len(set(texts)) != len(texts):
                raise ValueError("`responses` has duplicates: a response cannot be ranked above itself")
            return [PreferencePair(where, prompt, texts[i], texts[j])
                    for i in range(len(texts)) for j in range(i + 1, len(texts))]
        missing = [k for k in ("chosen", "rejected") if k not in row]
        if missing:
            raise ValueError(f"missing {missing} (or give `responses`, a ranked list)")
        chosen, rejected = _response(row["chosen"], "chosen"), _response(row["rejected"], "rejected")
        if chosen == rejected:
            raise ValueError("`chosen` and `rejected` are identical: no preference to learn")
        return [PreferencePair(where, prompt, chosen, rejected)]
    except ValueError as exc:
        raise BadRow(where, str(exc)) from None
