"""POST /v1/embeddings, as in the OpenAI API reference (served with --runner pooling)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from server.protocol.common import OpenAIModel, PoolingInput, PoolingUsage


class EmbeddingRequest(OpenAIModel):
    input: PoolingInput
    """What to embed: a text, texts, token ids, or lists of token ids; none empty, each at most
    the model's context length in tokens."""
    model: str
    """The base model or a LoRA adapter."""
    dimensions: Annotated[int, Field(ge=1)] | None = None
    """Shorten embeddings to this size: only for models trained for it (Matryoshka; their config
    says `matryoshka_dimensions` or `is_matryoshka`); others answer 400."""
    encoding_format: Literal["float", "base64"] = "float"
    """`base64`: each embedding as base64 of its little-endian float32 bytes."""
    user: str | None = None


class Embedding(BaseModel):
    embedding: list[float] | str
    """The vector (L2-normalised), or its base64 (`encoding_format: base64`)."""
    index: int
    object: Literal["embedding"] = "embedding"


class EmbeddingResponse(BaseModel):
    data: list[Embedding]
    model: str
    object: Literal["list"] = "list"
    usage: PoolingUsage
