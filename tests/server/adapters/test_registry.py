"""The registry's versioning and retirement, with a recording stand-in for the engine."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from server.adapters.base_model import BaseModelInfo
from server.adapters.registry import AdapterRegistry, adapter_name, engine_lora_name
from server.errors import APIError
from tests.e2e.helpers import publish


class RecordingEngine:
    def __init__(self):
        self.added, self.removed = [], []

    async def add_lora(self, request):
        self.added.append(request.lora_int_id)
        return True

    async def remove_lora(self, lora_id):
        self.removed.append(lora_id)
        return True


@pytest.fixture
def registry(tiny, tmp_path):
    engine = RecordingEngine()
    reg = AdapterRegistry(tmp_path / "adapters", BaseModelInfo.load(tiny["base"]), engine,
                          max_lora_rank=16)
    (tmp_path / "adapters").mkdir()
    yield reg, engine, tmp_path / "adapters"
    reg.close()


async def test_new_version_gets_new_id_and_old_is_unloaded_after_last_use(registry, tiny):
    reg, engine, root = registry
    publish(tiny["lora-a"], root, "x")
    v1 = await reg.get("x")
    assert engine.added == [v1.version] and v1.snapshot.is_dir()
    assert await reg.get("x") is v1  # unchanged files: same version, no reload

    reg.acquire(v1)  # a request in flight on v1
    publish(tiny["lora-b"], root, "x")
    v2 = await reg.get("x")
    assert v2.version != v1.version and v2.lora.rank == 16
    assert v1.retired and engine.removed == []  # still in use
    reg.release(v1)
    await asyncio.sleep(0)
    assert engine.removed == [v1.version] and not v1.snapshot.exists()


async def test_snapshot_isolates_the_engine_from_later_writes(registry, tiny):
    reg, _, root = registry
    publish(tiny["lora-a"], root, "x")
    adapter = await reg.get("x")
    before = (adapter.snapshot / "adapter_model.safetensors").read_bytes()
    # Overwrite in place without changing size or mtime resolution concerns: content differs.
    (root / "x" / "adapter_model.safetensors").write_bytes(b"partial write")
    assert (adapter.snapshot / "adapter_model.safetensors").read_bytes() == before
    with pytest.raises(APIError) as err:
        await reg.get("x")
    assert err.value.status == 400


async def test_failures_are_cached_per_fingerprint(registry, tiny):
    reg, engine, root = registry
    publish(tiny["lora-a"], root, "x")
    (root / "x" / "adapter_config.json").write_text("{oops")
    for _ in range(2):
        with pytest.raises(APIError, match="not valid JSON"):
            await reg.get("x")
    shutil.copy(tiny["lora-a"] / "adapter_config.json", root / "x" / "adapter_config.json")
    assert (await reg.get("x")).kind == "lora"


async def test_listing_and_deletion(registry, tiny):
    reg, engine, root = registry
    publish(tiny["lora-a"], root, "a")
    publish(tiny["prompt-a"], root, "p")
    (root / "not-an-adapter").mkdir()
    (root / ".hidden").mkdir()
    listed = dict(await reg.list())
    assert set(listed) == {"a", "p"}  # the soft prompt is refused without a loader: listed as error
    assert isinstance(listed["p"], APIError) and "PROMPT_TUNING" in listed["p"].message
    await reg.unregister("a")
    with pytest.raises(APIError) as err:
        await reg.get("a")
    assert err.value.status == 404


async def test_broken_adapter_can_be_deleted_and_unknown_names_cost_nothing(registry, tiny):
    reg, _, root = registry
    publish(tiny["lora-a"], root, "x")
    (root / "x" / "adapter_model.safetensors").write_bytes(b"broken")
    with pytest.raises(APIError):
        await reg.get("x")
    await reg.unregister("x")
    assert dict(await reg.list()) == {}
    for i in range(100):
        with pytest.raises(APIError):
            await reg.get(f"made-up-{i}")
    assert not any(name.startswith("made-up") for name in reg._slots)


@pytest.mark.parametrize("name", ["x", "sql-v2", "model.v2", "a.vb", "v1"])
def test_engine_lora_names_map_back_to_adapter_names(name):
    """Engine statistics name LoRAs per version; clients (and gateways) know the adapter name."""
    assert adapter_name(engine_lora_name(name, 12)) == name


def test_names_that_are_not_engine_names_pass_unchanged():
    assert [adapter_name(n) for n in ("a.vb", ".v3", "plain")] == ["a.vb", ".v3", "plain"]
