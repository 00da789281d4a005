"""POST /classify, in vLLM's shape (OpenAI has no classification API; served with --runner
pooling on a classifier)."""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, Field

from server.protocol.common import OpenAIModel, PoolingInput, PoolingUsage


class ClassificationRequest(OpenAIModel):
    input: PoolingInput
    """What to classify: a text, texts, token ids, or lists of token ids; none empty, each at most
    the model's context length in tokens."""
    model: str | None = None
    """The base model or a LoRA adapter. Default: the base model (as vLLM)."""
    user: str | None = None


class ClassificationData(BaseModel):
    index: int
    label: str | None
    """The most probable class's name (the model config's `id2label`), if it has one."""
    probs: list[float]
    """Probability of each class (softmax of the classifier's logits; sigmoid for one class)."""
    num_classes: int


class ClassificationResponse(BaseModel):
    id: str
    object: Literal["list"] = "list"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    data: list[ClassificationData]
    usage: PoolingUsage
