"""Everything a request handler needs, created once at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field

from vllm.v1.engine.async_llm import AsyncLLM

from server.adapters.base_model import BaseModelInfo
from server.adapters.registry import AdapterRegistry
from server.config import ServerConfig
from server.metrics import LoraResidency, Metrics
from server.rendering.prompts import PromptRenderer
from server.rendering.tool_parsing import ToolCalling


@dataclass
class ServerState:
    config: ServerConfig
    metrics: Metrics
    lora_residency: LoraResidency | None = None
    """The engine's LoRA residency metrics (`vllm:lora_adapter_loaded` and its kin)."""
    engine: AsyncLLM | None = None
    base: BaseModelInfo | None = None
    renderer: PromptRenderer | None = None
    registry: AdapterRegistry | None = None
    tool_calling: ToolCalling | None = None
    pooling_task: str | None = None
    """`embed` or `classify` with --runner pooling (what the model's pooler does); else None."""
    started_at: int = 0
    startup_error: str | None = None
    in_flight: set[str] = field(default_factory=set)
    """Engine request ids still generating (aborted together when a shutdown runs out of time)."""
    draining: bool = False
    """A shutdown has begun: new requests are refused."""
    paused: bool = False
    """Generation is held by `POST /pause` (until `/resume`, or a shutdown's drain)."""
    engine_died: bool = False

    @property
    def ready(self) -> bool:
        return self.engine is not None and self.registry is not None and not self.engine.errored
