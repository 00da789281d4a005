"""The KV connector vLLM instantiates twice: once next to the scheduler, once in each worker.

Configured by `server.engine` through `server.in_engine.soft_prompt_cache.kv_transfer_config`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from vllm.distributed.kv_transfer.kv_connector.v1.base import (
    KVConnectorBase_V1,
    KVConnectorMetadata,
    KVConnectorRole,
)
from vllm.logger import init_logger
from vllm.v1.metrics.cache_hit_source import CacheHitSource

from server.in_engine.soft_prompt_cache.blocks import BlockStore
from server.in_engine.soft_prompt_cache.plan import Planner, StepPlan

if TYPE_CHECKING:
    from vllm.config import VllmConfig
    from vllm.forward_context import ForwardContext
    from vllm.v1.attention.backend import AttentionMetadata
    from vllm.v1.core.kv_cache_manager import KVCacheBlocks
    from vllm.v1.core.sched.output import SchedulerOutput
    from vllm.v1.kv_cache_interface import KVCacheConfig
    from vllm.v1.request import Request

logger = init_logger(__name__)


@dataclass
class SoftPromptCacheMetadata(KVConnectorMetadata):
    plan: StepPlan


class SoftPromptKVConnector(KVConnectorBase_V1):
    _cache_hit_source = CacheHitSource.DEVICE  # the copies live next to the KV cache

    def __init__(self, vllm_config: VllmConfig, role: KVConnectorRole,
                 kv_cache_config: KVCacheConfig) -> None:
        super().__init__(vllm_config=vllm_config, role=role, kv_cache_config=kv_cache_config)
        self._planner: Planner | None = None
        self._store: BlockStore | None = None
        if role == KVConnectorRole.SCHEDULER:
            groups = kv_cache_config.kv_cache_groups
            if len(groups) != 1:
                # Hybrid models (several KV groups) keep plain prefix caching.
                logger.warning("soft-prompt KV cache off: the model has %d KV cache groups",
                               len(groups))
                return
            spec = groups[0].kv_cache_spec
            budget_mib = float(self._kv_transfer_config.get_from_extra_config("budget_mib", 64))
            self._planner = Planner(
                block_size=spec.block_size,
                block_bytes=spec.page_size_bytes * len(groups[0].layer_names),
                budget_bytes=int(budget_mib * 2**20))
        else:
            self._store = BlockStore()
            self._num_blocks = kv_cache_config.num_blocks

    @property
    def requires_kv_delivery(self) -> bool:
        return False  # a cache: a dropped save is only a later miss

    # Scheduler side.

    def on_new_request(self, request: Request) -> None:
        if self._planner is not None:
            self._planner.add_request(request)

    def get_num_new_matched_tokens(self, request: Request, num_computed_tokens: int) -> tuple[int, bool]:
        if self._planner is None:
            return 0, False
        return self._planner.matched_tokens(request, num_computed_tokens), False

    def update_state_after_alloc(self, request: Request, blocks: KVCacheBlocks,
                                 num_external_tokens: int) -> None:
        if self._planner is not None:
            self._planner.admitted(request.request_id, num_external_tokens)

    def build_connector_meta(self, scheduler_output: SchedulerOutput) -> KVConnectorMetadata:
        if self._planner is None:
            return SoftPromptCacheMetadata(StepPlan())
        return SoftPromptCacheMetadata(self._planner.build(
            scheduler_output.scheduled_new_reqs, scheduler_output.scheduled_cached_reqs,
            scheduler_output.num_scheduled_tokens))

    def request_finished(self, request: Request, block_ids: list[int]) -> tuple[bool, dict[str, Any] | None]:
        if self._planner is not None:
            self._planner.finish_request(request.request_id)
        return False, None

    # Worker side: loads before the step's forward (the scheduler marks them synchronous),
    # saves and evictions after it.

    def register_kv_caches(self, kv_caches: dict[str, torch.Tensor]) -> None:
        self._store.register(kv_caches, self._num_blocks)

    def start_load_kv(self, forward_context: ForwardContext, **kwargs: Any) -> None:
        for op in self._step_plan().loads:
            self._store.load(op)

    def wait_for_layer_load(self, layer_name: str) -> None:
        return

    def save_kv_layer(self, layer_name: str, kv_layer: torch.Tensor,
                      attn_metadata: AttentionMetadata, **kwargs: Any) -> None:
        return

    def wait_for_save(self) -> None:
        plan = self._step_plan()
        for op in plan.saves:
            self._store.save(op)
        for key in plan.evictions:
            self._store.evict(key)

    def get_block_ids_with_load_errors(self) -> set[int]:
        return self._store.take_failed() if self._store is not None else set()

    def _step_plan(self) -> StepPlan:
        meta = self._get_connector_metadata()
        assert isinstance(meta, SoftPromptCacheMetadata)
        return meta.plan
