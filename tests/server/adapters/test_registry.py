"""The registry's versioning and retirement, with a recording stand-in for the engine."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest

from server.adapters.base_model import BaseModelInfo
from server.adapters.registry import AdapterRegistry, adapter_name, engine_lora_name
from server.errors import APIError
from tests.e2e.helpers import publish


class RecordingEngine:
    def __init__(self):
        self.added, self.removed, self.pinned = [], [], []

    async def pin_lora(self, lora_id):
        self.pinned.append(lora_id)
        return True

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


async def test_a_name_no_longer_served_leaves_no_metric_series_and_no_slot(tiny, tmp_path):
    """Online RL loads a new adapter name at every step: what the server keeps per name (metric
    series, registry slots) must go when the name does, and stay while a new version replaces an
    old one under the same name."""
    from prometheus_client import CollectorRegistry

    from server.metrics import Metrics

    metrics = Metrics(CollectorRegistry())
    reg = AdapterRegistry(tmp_path / "adapters", BaseModelInfo.load(tiny["base"]), RecordingEngine(),
                          max_lora_rank=16, metrics=metrics, extra_roots=(tmp_path / "trainer",))
    (tmp_path / "adapters").mkdir()
    (tmp_path / "trainer").mkdir()

    def series(name: str) -> int:
        return sum(1 for family in metrics.requests.collect() for s in family.samples
                   if s.name.endswith("_total") and s.labels.get("adapter") == name)

    publish(tiny["lora-a"], tmp_path / "trainer", "policy-v1")
    v1 = await reg.register("policy-v1", str(tmp_path / "trainer" / "policy-v1"))
    reg.acquire(v1)  # a request in flight when the trainer unloads the version
    metrics.requests.labels("/v1/completions", "policy-v1", "none", "ok").inc()
    await reg.unregister("policy-v1")
    assert series("policy-v1") == 1 and "policy-v1" not in reg._slots
    metrics.requests.labels("/v1/completions", "policy-v1", "none", "ok").inc()  # it finishes
    reg.release(v1)
    assert series("policy-v1") == 0

    publish(tiny["lora-a"], tmp_path / "adapters", "kept")
    await reg.get("kept")
    metrics.requests.labels("/v1/completions", "kept", "none", "ok").inc()
    publish(tiny["lora-b"], tmp_path / "adapters", "kept")  # a new version under the same name
    await reg.get("kept")
    assert series("kept") == 1
    reg.close()


def pin_by_manifest(tiny, directory) -> None:
    identity = BaseModelInfo.load(tiny["base"]).identity
    (directory / "manifest.json").write_text(json.dumps(
        {"format": 1, "base_model": {"identity": identity}, "pinned": True}))


def pinning_registry(tiny, root, **kwargs) -> tuple[AdapterRegistry, RecordingEngine]:
    engine = RecordingEngine()
    root.mkdir()
    return AdapterRegistry(root, BaseModelInfo.load(tiny["base"]), engine, max_lora_rank=16,
                           **kwargs), engine


async def test_pinned_adapters_load_at_start_and_each_new_version_is_pinned(tiny, tmp_path):
    """--pin-adapters names and manifests that say `pinned` are loaded and pinned at start-up;
    other adapters are not; a new version of a pinned adapter is pinned in its turn."""
    root = tmp_path / "adapters"
    reg, engine = pinning_registry(tiny, root, pinned={"hot"}, max_pinned=3)
    for name in ("hot", "by-manifest", "cold"):
        publish(tiny["lora-a"], root, name)
    pin_by_manifest(tiny, root / "by-manifest")
    await reg.load_pinned()
    loaded = reg.engine_loras()
    assert sorted(a.name for a in loaded.values()) == ["by-manifest", "hot"]  # `cold` waits for a request
    assert sorted(engine.pinned) == sorted(loaded) and all(a.pinned for a in loaded.values())

    publish(tiny["lora-b"], root, "hot")
    v2 = await reg.get("hot")
    assert v2.pinned and engine.pinned[-1] == v2.lora_request.lora_int_id
    assert not (await reg.get("cold")).pinned
    reg.close()


async def test_pins_beyond_the_allowance_are_refused_at_start_or_left_unpinned(tiny, tmp_path):
    root = tmp_path / "adapters"
    reg, _ = pinning_registry(tiny, root, pinned={"a", "b"}, max_pinned=1)
    with pytest.raises(ValueError, match="at most 1 can be pinned"):
        await reg.load_pinned()
    reg.close()

    reg, engine = pinning_registry(tiny, tmp_path / "more", max_pinned=1)
    for name in ("m1", "m2"):
        publish(tiny["lora-a"], tmp_path / "more", name)
        pin_by_manifest(tiny, tmp_path / "more" / name)
    await reg.load_pinned()
    assert len(engine.pinned) == 1  # the second would take the last free slot
    reg.close()


async def test_a_pinned_name_that_cannot_be_served_stops_the_start(tiny, tmp_path):
    reg, _ = pinning_registry(tiny, tmp_path / "adapters", pinned={"missing"}, max_pinned=3)
    with pytest.raises(ValueError, match="--pin-adapters: .*missing"):
        await reg.load_pinned()
    reg.close()
