"""The worker-side store: whole KV blocks copied out of and into the paged cache."""

from __future__ import annotations

import pytest
import torch

from server.in_engine.soft_prompt_cache.blocks import BlockStore, by_block
from server.in_engine.soft_prompt_cache.plan import Load, Save

NUM_BLOCKS = 10


def caches(shape=(NUM_BLOCKS, 2, 4, 6), layers=3):
    return {f"layer.{i}": torch.randn(shape) for i in range(layers)}


def test_saved_blocks_are_copied_into_other_blocks_of_every_layer():
    kv = caches()
    store = BlockStore()
    store.register(kv, NUM_BLOCKS)
    expected = {name: c[[3, 5]].clone() for name, c in kv.items()}
    store.save(Save(b"k", [3, 5]))
    for c in kv.values():  # the saver's blocks are reused for something else
        c[[3, 5]] = 0.0
    store.load(Load(b"k", 0, [7, 2]))
    for name, c in kv.items():
        assert torch.equal(c[[7, 2]], expected[name])


def test_load_from_a_later_block_fills_only_those():
    kv = caches()
    store = BlockStore()
    store.register(kv, NUM_BLOCKS)
    second = {name: c[5].clone() for name, c in kv.items()}
    store.save(Save(b"k", [3, 5]))
    untouched = {name: c[4].clone() for name, c in kv.items()}
    store.load(Load(b"k", 1, [8]))
    for name, c in kv.items():
        assert torch.equal(c[8], second[name]) and torch.equal(c[4], untouched[name])


def test_missing_entry_reports_its_blocks_for_recompute():
    store = BlockStore()
    store.register(caches(), NUM_BLOCKS)
    store.save(Save(b"k", [1]))
    store.evict(b"k")
    assert b"k" not in store
    store.load(Load(b"k", 0, [4, 6]))
    assert store.take_failed() == {4, 6} and store.take_failed() == set()


def test_layers_sharing_one_tensor_are_copied_once():
    shared = torch.randn(NUM_BLOCKS, 3)
    store = BlockStore()
    store.register({"a": shared, "b": shared}, NUM_BLOCKS)
    store.save(Save(b"k", [0]))
    store.load(Load(b"k", 0, [1]))
    assert torch.equal(shared[1], shared[0])


@pytest.mark.parametrize("shape, dim", [
    ((NUM_BLOCKS, 2, 4, 6), 0),  # CPU: [blocks, kv heads, block size, 2 * head size]
    ((2, NUM_BLOCKS, 4, 2, 6), 1),  # flash attention: [K/V, blocks, block size, heads, head size]
])
def test_block_dimension_found_by_the_block_count(shape, dim):
    view, found = by_block(torch.zeros(shape), NUM_BLOCKS)
    assert found == dim and view.shape == shape


def test_kernel_sub_blocks_are_grouped_into_blocks():
    cache = torch.arange(NUM_BLOCKS * 2 * 3).view(NUM_BLOCKS * 2, 3)
    view, dim = by_block(cache, NUM_BLOCKS)
    assert dim == 0 and view.shape == (NUM_BLOCKS, 2, 3)
    view[4] = -1  # a view: writes land in the kernel blocks 8 and 9
    assert (cache[8:10] == -1).all()


def test_cache_without_a_block_dimension_is_refused():
    with pytest.raises(ValueError, match="indexes its 10 blocks"):
        by_block(torch.zeros(7, 3), NUM_BLOCKS)
