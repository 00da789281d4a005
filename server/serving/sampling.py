"""OpenAI sampling fields -> vLLM `SamplingParams`, refusing what the engine would refuse."""

from __future__ import annotations

from vllm.exceptions import VLLMClientError
from vllm.sampling_params import RequestOutputKind, SamplingParams

from server.errors import bad_request
from server.protocol.common import SamplingRequest
from server.serving import structured_outputs
from server.serving.structured_outputs import Constraint


def stop_strings(stop: str | list[str] | None) -> list[str]:
    strings = [stop] if isinstance(stop, str) else list(stop or [])
    if any(s == "" for s in strings):
        raise bad_request("stop strings must not be empty", param="stop")
    return strings


def logit_bias(bias: dict[str, float] | None, vocab_size: int) -> dict[int, float] | None:
    if not bias:
        return None
    out = {}
    for key, value in bias.items():
        try:
            token = int(key)
        except ValueError:
            raise bad_request(f"logit_bias keys must be token ids, got {key!r}", param="logit_bias")
        if not 0 <= token < vocab_size:
            raise bad_request(f"logit_bias token id {token} is outside the vocabulary "
                              f"[0, {vocab_size})", param="logit_bias")
        out[token] = value
    return out


def sampling_params(
    request: SamplingRequest,
    *,
    max_tokens: int,
    logprobs: int | None,
    max_logprobs: int,
    vocab_size: int,
    constraint: Constraint | None = None,
    skip_special_tokens: bool = True,
    prompt_logprobs: int | None = None,
) -> SamplingParams:
    """`constraint`: checked by the caller (`structured_outputs.check`). `prompt_logprobs`: the
    log-probabilities of the prompt's own tokens too (with this many alternatives each)."""
    if logprobs is not None and logprobs > max_logprobs:
        raise bad_request(f"at most {max_logprobs} logprobs per token can be returned, "
                          f"got {logprobs}", param="logprobs")
    stop = stop_strings(request.stop)
    if constraint is not None:
        structured_outputs.refuse_conflicts(request)
        # The grammar decides where a constrained output ends; a stop string could only cut it
        # inside the JSON (or choice, regex match) and break the guarantee that it parses.
        stop = []
    try:
        return _build(request, max_tokens, logprobs, vocab_size, stop, constraint,
                      skip_special_tokens, prompt_logprobs)
    except (ValueError, VLLMClientError) as exc:  # vLLM's own checks
        raise bad_request(str(exc)) from exc


def _build(request: SamplingRequest, max_tokens: int, logprobs: int | None, vocab_size: int,
           stop: list[str], constraint: Constraint | None,
           skip_special_tokens: bool, prompt_logprobs: int | None) -> SamplingParams:
    return SamplingParams(
        n=request.n or 1,
        temperature=1.0 if request.temperature is None else request.temperature,
        top_p=1.0 if request.top_p is None else request.top_p,
        top_k=max(request.top_k or 0, 0),  # 0 = no limit; -1 accepted as an alias
        min_p=request.min_p or 0.0,
        presence_penalty=request.presence_penalty or 0.0,
        frequency_penalty=request.frequency_penalty or 0.0,
        repetition_penalty=1.0 if request.repetition_penalty is None else request.repetition_penalty,
        seed=request.seed,
        stop=stop,
        max_tokens=max_tokens,
        min_tokens=min(request.min_tokens or 0, max_tokens),
        ignore_eos=bool(request.ignore_eos),
        logprobs=logprobs,
        prompt_logprobs=prompt_logprobs,  # vLLM then computes the prompt afresh (no prefix cache)
        logit_bias=logit_bias(request.logit_bias, vocab_size),
        structured_outputs=constraint.params if constraint is not None else None,
        skip_special_tokens=skip_special_tokens,
        # Streaming sends only what is new; otherwise one result at the end.
        output_kind=RequestOutputKind.DELTA if request.stream else RequestOutputKind.FINAL_ONLY,
    )
