"""POST /classify: inputs in, class probabilities and the likeliest label out (--runner
pooling on a classifier: a *ForSequenceClassification checkpoint, or --convert classify)."""

from __future__ import annotations

import time

from vllm.pooling_params import PoolingParams

from server.auth import FULL_ACCESS, Grant
from server.protocol.classify import (
    ClassificationData,
    ClassificationRequest,
    ClassificationResponse,
)
from server.protocol.common import PoolingUsage
from server.serving import pooling, request_info, targets
from server.state import ServerState


async def create_classification(
    state: ServerState, request: ClassificationRequest, caller: Grant = FULL_ACCESS
) -> ClassificationResponse:
    pooling.require_task(state, "classify")
    assert state.engine is not None and state.renderer is not None
    # No `model`: the base model, as vLLM's /classify does.
    request = request.model_copy(update={"model": request.model or state.config.model_name})
    prompts = await pooling.inputs(state.renderer, request.input)
    target = await targets.target_for(state, request, caller)
    rid = request_info.request_id("classify")
    created = int(time.time())
    outputs = await pooling.encode(state, target, "classify", rid, prompts,
                                   PoolingParams(task="classify"), request_info.timeout(state, request))
    # The base model's labels: a LoRA adapts the weights, not the label set.
    labels = state.engine.model_config.hf_config.id2label or {}
    data = []
    for i, out in enumerate(outputs):
        probs = out.outputs.data.float().tolist()
        best = max(range(len(probs)), key=probs.__getitem__)
        data.append(ClassificationData(index=i, label=labels.get(best), probs=probs,
                                       num_classes=len(probs)))
    tokens = sum(map(len, prompts))
    return ClassificationResponse(id=rid, created=created, model=request.model, data=data,
                                  usage=PoolingUsage(prompt_tokens=tokens, total_tokens=tokens))
