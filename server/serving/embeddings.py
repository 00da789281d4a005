"""POST /v1/embeddings: inputs in, one L2-normalised vector each out (--runner pooling,
--convert embed)."""

from __future__ import annotations

import base64

import torch
from vllm.pooling_params import PoolingParams

from server.auth import FULL_ACCESS, Grant
from server.errors import bad_request
from server.protocol.common import PoolingUsage
from server.protocol.embeddings import Embedding, EmbeddingRequest, EmbeddingResponse
from server.serving import pooling, request_info, targets
from server.state import ServerState


def _encoded(vector: torch.Tensor, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        # As OpenAI sends it (and its client decodes it): little-endian float32 bytes.
        return base64.b64encode(vector.numpy().astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()


async def create_embeddings(
    state: ServerState, request: EmbeddingRequest, caller: Grant = FULL_ACCESS
) -> EmbeddingResponse:
    pooling.require_task(state, "embed")
    assert state.engine is not None and state.renderer is not None
    if request.dimensions is not None and not state.engine.model_config.is_matryoshka:
        raise bad_request(
            f"`{request.model}` cannot shorten its embeddings: `dimensions` needs a model trained "
            "for it (Matryoshka; its config says `matryoshka_dimensions` or `is_matryoshka`)",
            param="dimensions")
    prompts = await pooling.inputs(state.renderer, request.input)
    target = await targets.target_for(state, request, caller)
    # vLLM checks `dimensions` against the model's sizes (a ValueError: 400).
    params = PoolingParams(task="embed", dimensions=request.dimensions)
    outputs = await pooling.encode(state, target, "embeddings", request_info.request_id("embd"),
                                   prompts, params, request_info.timeout(state, request))
    tokens = sum(map(len, prompts))
    return EmbeddingResponse(
        data=[Embedding(index=i, embedding=_encoded(out.outputs.data.float().cpu(),
                                                    request.encoding_format))
              for i, out in enumerate(outputs)],
        model=request.model, usage=PoolingUsage(prompt_tokens=tokens, total_tokens=tokens))
