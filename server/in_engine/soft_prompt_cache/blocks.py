"""Worker side: keep copies of saved KV blocks and write them into requests' blocks.

Whole blocks are copied, whatever the attention backend's layout inside a block (the CPU
kernels pack keys per ISA), along the dimension that indexes blocks. A loaded block may carry,
past the virtual tokens, the saving request's own tokens: the loading request overwrites those
positions as it computes them, and attention never reads a position before it is written.
"""

from __future__ import annotations

import torch

from server.in_engine.soft_prompt_cache.plan import Load, Save


def by_block(cache: torch.Tensor, num_blocks: int) -> tuple[torch.Tensor, int]:
    """A view of a layer's paged KV tensor and the dimension in it that indexes blocks.

    That is the first dimension of size `num_blocks`; failing that, a leading dimension of
    kernel blocks (a whole multiple: vLLM splits a block for kernels with smaller ones)."""
    for dim, size in enumerate(cache.shape):
        if size == num_blocks:
            return cache, dim
    if cache.shape[0] % num_blocks == 0:
        return cache.unflatten(0, (num_blocks, -1)), 0
    raise ValueError(f"no dimension of a KV cache of shape {list(cache.shape)} indexes its "
                     f"{num_blocks} blocks")


class BlockStore:
    def __init__(self) -> None:
        self._layers: list[tuple[torch.Tensor, int]] = []  # (paged KV tensor, block dimension)
        self._saved: dict[bytes, list[torch.Tensor]] = {}  # key -> per layer, its blocks
        self._failed: set[int] = set()

    def register(self, kv_caches: dict[str, torch.Tensor], num_blocks: int) -> None:
        seen = set()
        for cache in kv_caches.values():
            if cache.data_ptr() in seen:  # layers sharing one tensor
                continue
            seen.add(cache.data_ptr())
            self._layers.append(by_block(cache, num_blocks))

    def __contains__(self, key: bytes) -> bool:
        return key in self._saved

    def save(self, op: Save) -> None:
        ids = torch.tensor(op.block_ids, device=self._device)
        self._saved[op.key] = [cache.index_select(dim, ids) for cache, dim in self._layers]

    def load(self, op: Load) -> None:
        saved = self._saved.get(op.key)
        if saved is None:
            # Not expected (the planner only loads what it saved before); vLLM recomputes the
            # blocks reported here instead of reading them.
            self._failed.update(op.block_ids)
            return
        ids = torch.tensor(op.block_ids, device=self._device)
        rows = torch.arange(op.first, op.first + len(op.block_ids), device=self._device)
        for (cache, dim), blocks in zip(self._layers, saved):
            cache.index_copy_(dim, ids, blocks.index_select(dim, rows))

    def evict(self, key: bytes) -> None:
        self._saved.pop(key, None)

    def take_failed(self) -> set[int]:
        failed, self._failed = self._failed, set()
        return failed

    @property
    def _device(self) -> torch.device:
        return self._layers[0][0].device
