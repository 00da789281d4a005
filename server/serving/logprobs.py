"""vLLM's per-token logprobs -> the two OpenAI logprobs shapes (legacy completions, chat)."""

from __future__ import annotations

from collections.abc import Sequence

from vllm.logprobs import Logprob

from server.protocol.chat import ChoiceLogprobs, TokenLogprob, TopLogprob
from server.protocol.completions import CompletionLogprobs

Position = dict[int, Logprob]


def _token(token_id: int, lp: Logprob, tokenizer) -> str:
    return lp.decoded_token if lp.decoded_token is not None else tokenizer.decode([token_id])


def _top(position: Position, k: int) -> list[tuple[int, Logprob]]:
    # The dict holds the k most likely tokens plus the sampled one (which may rank lower).
    return sorted(position.items(), key=lambda item: -item[1].logprob)[:k]


def completion_logprobs(
    token_ids: Sequence[int], positions: Sequence[Position], k: int, tokenizer, offset: int = 0
) -> CompletionLogprobs:
    out = CompletionLogprobs()
    for token_id, position in zip(token_ids, positions):
        chosen = position[token_id]
        text = _token(token_id, chosen, tokenizer)
        out.tokens.append(text)
        out.token_logprobs.append(chosen.logprob)
        out.top_logprobs.append({_token(t, lp, tokenizer): lp.logprob for t, lp in _top(position, k)})
        out.text_offset.append(offset)
        offset += len(text)
    return out


def echoed_logprobs(
    prompt_ids: Sequence[int], positions: Sequence[Position | None], k: int, tokenizer,
    completion: CompletionLogprobs,
) -> CompletionLogprobs:
    """`completion` after the logprobs of the prompt's own tokens, as OpenAI's legacy completions
    give them with `echo`: the first token has no context (vLLM's position is None), so its
    logprob and top are null."""
    if not positions:
        return completion
    first = tokenizer.decode(prompt_ids[:1])
    scored = completion_logprobs(prompt_ids[1:], positions[1:], k, tokenizer, offset=len(first))
    end = len(first) + sum(map(len, scored.tokens))
    return CompletionLogprobs(
        tokens=[first, *scored.tokens, *completion.tokens],
        token_logprobs=[None, *scored.token_logprobs, *completion.token_logprobs],
        top_logprobs=[None, *scored.top_logprobs, *completion.top_logprobs],
        text_offset=[0, *scored.text_offset, *(end + o for o in completion.text_offset)])


def chat_logprobs(
    token_ids: Sequence[int], positions: Sequence[Position], k: int, tokenizer
) -> ChoiceLogprobs:
    def entry(token_id: int, lp: Logprob) -> TopLogprob:
        text = _token(token_id, lp, tokenizer)
        return TopLogprob(token=text, logprob=lp.logprob, bytes=list(text.encode("utf-8")))

    content = []
    for token_id, position in zip(token_ids, positions):
        chosen = entry(token_id, position[token_id])
        content.append(TokenLogprob(**chosen.model_dump(),
                                    top_logprobs=[entry(t, lp) for t, lp in _top(position, k)]))
    return ChoiceLogprobs(content=content)
