"""`make_client`: the app on a scripted engine (tests/server/api/scripted.py), no model loaded."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from transformers import AutoTokenizer

from server.adapters.base_model import BaseModelInfo
from server.adapters.registry import AdapterRegistry
from server.app import create_app
from server.config import ServerConfig
from server.rendering.prompts import PromptRenderer
from server.rendering.tool_parsing import ToolCalling
from tests.server.api.scripted import ScriptedEngine


@pytest.fixture
def make_client(tiny, tmp_path):
    """make(engine=None, ready=True, **config): a TestClient; `config` overrides ServerConfig
    fields. The adapters directory is `tmp_path`."""
    def make(engine=None, ready=True, **config):
        app = create_app(ServerConfig(model=str(tiny["base"]), adapters=str(tmp_path), **config),
                         start=False, registry=CollectorRegistry())
        state = app.state.server
        if ready:
            state.engine = engine or ScriptedEngine()
            state.base = BaseModelInfo.load(tiny["base"])
            tokenizer = AutoTokenizer.from_pretrained(tiny["base"])
            state.renderer = PromptRenderer(tokenizer, 512, 256)
            state.tool_calling = ToolCalling(None, tokenizer, "base")
            state.registry = AdapterRegistry(
                tmp_path, state.base, state.engine, max_lora_rank=16,
                extra_roots=tuple(Path(r) for r in state.config.lora_roots))
        return TestClient(app, raise_server_exceptions=False)
    return make
