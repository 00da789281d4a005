"""POST /v1/completions: prompts in, text out (streamed or whole)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from vllm.outputs import CompletionOutput, RequestOutput

from server.auth import FULL_ACCESS, Grant
from server.errors import bad_request
from server.in_engine.lora_ops import install as lora_ops
from server.protocol.common import Usage
from server.protocol.completions import CompletionChoice, CompletionRequest, CompletionResponse
from server.serving import request_info, streaming, structured_outputs, targets
from server.serving.generation import generate
from server.serving.logprobs import completion_logprobs, echoed_logprobs
from server.serving.sampling import sampling_params
from server.serving.usage import UsageCounter
from server.state import ServerState


def _check_supported(request: CompletionRequest) -> None:
    if request.suffix:
        raise bad_request("suffix (fill-in-the-middle) is not supported", param="suffix")
    if request.best_of is not None and request.best_of != (request.n or 1):
        raise bad_request("best_of other than n is not supported", param="best_of")


async def create_completion(
    state: ServerState, request: CompletionRequest, caller: Grant = FULL_ACCESS
) -> CompletionResponse | AsyncIterator[str]:
    _check_supported(request)
    renderer = state.renderer
    assert renderer is not None
    target = await targets.target_for(state, request, caller)
    # echo + logprobs scores the prompt too (how RL trainers ask for reference log-probabilities).
    scores_prompt = bool(request.echo) and request.logprobs is not None
    try:
        if scores_prompt and target.num_virtual_tokens:
            raise bad_request("echo together with logprobs is not supported with a soft prompt "
                              "(its virtual tokens have no log-probabilities)", param="echo")
        if scores_prompt and not lora_ops.scores_prompts(state.config.fast_lora_ops):
            # vLLM's own LoRA ops crash the engine on it, or drop an lm_head adapter (vLLM #29955,
            # #51594); ours apply each prompt token's adapter (server.in_engine.lora_ops.punica).
            raise bad_request("echo together with logprobs needs this server's CPU LoRA ops "
                              "(not with --no-fast-lora-ops, nor on GPU yet: vLLM #29955)", param="echo")
        prompts = await renderer.completion_prompts(
            request.prompt, target.apply_template if request.use_adapter_template else None)
        virtual = target.num_virtual_tokens
        max_tokens = min(renderer.max_tokens(len(p.token_ids) + virtual, request.max_tokens)
                         for p in prompts)
        constraint = structured_outputs.checked(state.engine, structured_outputs.requested(request),
                                                request.json_max_whitespace)
        params = sampling_params(request, max_tokens=max_tokens, logprobs=request.logprobs,
                                 max_logprobs=state.config.max_logprobs,
                                 vocab_size=renderer.vocab_size, constraint=constraint,
                                 prompt_logprobs=request.logprobs if scores_prompt else None)
    except BaseException:
        target.release()
        raise
    rid = request_info.request_id("cmpl")
    created = int(time.time())
    counter = UsageCounter(sum(len(p.token_ids) + virtual for p in prompts))
    outputs = await streaming.started(generate(
        state, target, "completions", rid, [p.token_ids for p in prompts], params, counter,
        request_info.timeout(state, request), constraint.param if constraint else None))

    def choice(prompt_index: int, result: RequestOutput, out: CompletionOutput, first: bool,
               offset: int = 0) -> CompletionChoice:
        prompt = prompts[prompt_index]
        text = out.text
        echoed = request.echo and first
        if echoed:
            text = (prompt.text if prompt.text is not None
                    else renderer.tokenizer.decode(prompt.token_ids)) + text
        logprobs = None if request.logprobs is None else completion_logprobs(
            out.token_ids, out.logprobs or [], request.logprobs, renderer.tokenizer, offset)
        if logprobs is not None and echoed:
            logprobs = echoed_logprobs(prompt.token_ids, result.prompt_logprobs or [],
                                       request.logprobs, renderer.tokenizer, logprobs)
        return CompletionChoice(
            index=prompt_index * params.n + out.index,
            text=text,
            finish_reason=request_info.finish_reason(out.finish_reason),
            logprobs=logprobs,
            token_ids=list(out.token_ids) if request.return_token_ids else None,
            prompt_token_ids=prompt.token_ids if request.return_token_ids and first else None,
        )

    def response(choices: list[CompletionChoice], usage: Usage | None = None) -> CompletionResponse:
        return CompletionResponse(id=rid, created=created, model=request.model, choices=choices,
                                  usage=usage)

    if not request.stream:
        choices = []
        async for i, out in outputs:
            choices.extend(choice(i, out, o, True) for o in out.outputs)
        choices.sort(key=lambda c: c.index)
        return response(choices, counter.usage())

    include_usage = bool(request.stream_options and request.stream_options.include_usage)

    async def chunks() -> AsyncIterator[CompletionResponse]:
        text_so_far: dict[tuple[int, int], int] = {}  # (prompt, choice) -> characters sent
        async for i, out in outputs:
            for o in out.outputs:
                key = (i, o.index)
                c = choice(i, out, o, first=key not in text_so_far, offset=text_so_far.get(key, 0))
                text_so_far[key] = text_so_far.get(key, 0) + len(c.text)
                yield response([c])
        if include_usage:
            yield response([], counter.usage())

    return streaming.sse_stream(chunks())
