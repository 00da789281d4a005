"""GET /v1/models and the adapter management endpoints (the latter are not in OpenAI)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from server.protocol.common import EXTENSION, OpenAIModel


class ModelCard(BaseModel):
    id: str
    created: int
    object: Literal["model"] = "model"
    owned_by: str = "adapter-serve"

    # Extensions (not in the OpenAI API), as vLLM lists them: `root` is the weights' location,
    # `parent` the base model an adapter applies to (None for the base itself).
    root: Annotated[str | None, EXTENSION] = None
    parent: Annotated[str | None, EXTENSION] = None
    max_model_len: Annotated[int | None, EXTENSION] = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard] = Field(default_factory=list)


# Extensions (not in the OpenAI API): adapter management.


class AdapterInfo(BaseModel):
    name: str
    kind: Literal["lora", "soft_prompt"] | None
    path: str
    status: Literal["ready", "error"]
    error: str | None = None
    version: int | None = None
    rank: int | None = None
    num_virtual_tokens: int | None = None
    loaded_at: int | None = None
    manifest: dict | None = None


class AdapterList(BaseModel):
    object: Literal["list"] = "list"
    data: list[AdapterInfo]


class LoadAdapterRequest(OpenAIModel):
    name: str
    """Name to serve the adapter under (used as `model` in requests)."""
    path: str | None = None
    """Adapter directory, relative to the adapters directory. Default: the name."""


# Extensions: vLLM's runtime LoRA API, field for field (vllm/entrypoints/serve/lora/protocol.py),
# so that clients written for vLLM (TRL's AsyncGRPO, verl, SkyRL, prime-rl) manage adapters here
# unchanged. Both map onto the registry that /v1/adapters uses.


class LoadLoRAAdapterRequest(OpenAIModel):
    lora_name: str
    """Name to serve the adapter under (used as `model` in requests)."""
    lora_path: str
    """Adapter directory: relative to the adapters directory, or absolute inside it or inside a
    `--lora-roots` directory."""
    load_inplace: bool = False
    """Serve this directory under a name that is already served (a new version: requests in
    flight finish on the old one). False: a name already served is a 400, as in vLLM."""
    is_3d_lora_weight: bool = False
    """vLLM's flag for mixture-of-experts adapters with 3-D weights; not served here (400)."""


class UnloadLoRAAdapterRequest(OpenAIModel):
    lora_name: str
    """The adapter to stop serving."""
    lora_int_id: int | None = None
    """vLLM's engine id of the adapter; accepted and ignored (the name decides)."""
