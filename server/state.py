"""Everything a request handler needs, created once at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from vllm.v1.engine.async_llm import AsyncLLM

from server.adapters.base_model import BaseModelInfo
from server.adapters.registry import AdapterRegistry
from server.config import ServerConfig
from server.metrics import Metrics
from server.rendering.prompts import PromptRenderer
from server.rendering.tool_parsing import ToolCalling


@dataclass
class ServerState:
    config: ServerConfig
    metrics: Metrics
    engine: AsyncLLM | None = None
    base: BaseModelInfo | None = None
    renderer: PromptRenderer | None = None
    registry: AdapterRegistry | None = None
    tool_calling: ToolCalling | None = None
    started_at: int = 0
    startup_error: str | None = None

    @property
    def ready(self) -> bool:
        return self.engine is not None and self.registry is not None and not self.engine.errored
