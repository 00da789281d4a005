"""Scheduler side: which requests save their virtual tokens' KV, which load it, what is evicted.

Runs in the engine-core process. The worker applies each step's plan in step order, after the
steps before it, so a key this side has marked saved is in the worker's store by the time any
later step loads it (also with async scheduling, where step N+1 is planned while step N runs).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class Save:
    key: bytes
    block_ids: list[int]  # the request's first blocks, covering its virtual tokens


@dataclass(frozen=True)
class Load:
    key: bytes
    first: int  # index of the first block to fill (blocks before it came from the prefix cache)
    block_ids: list[int]  # the request's blocks [first, first + len)


@dataclass
class StepPlan:
    loads: list[Load] = field(default_factory=list)
    saves: list[Save] = field(default_factory=list)
    evictions: list[bytes] = field(default_factory=list)


def virtual_tokens(request) -> int:
    """Leading positions fed as embeddings in a mixed token-ids + embeddings prompt (0: none)."""
    mask = request.prompt_is_token_ids
    if request.prompt_embeds is None or mask is None:
        return 0
    count = 0
    for is_token in mask:
        if is_token:
            break
        count += 1
    return count


def request_key(request, count: int) -> bytes:
    """Identifies what the first `count` positions' KV depends on: their rows and the weights."""
    rows = request.prompt_embeds[:count].contiguous()
    h = hashlib.blake2b(digest_size=16)
    h.update(str(rows.dtype).encode())
    h.update(rows.view(torch.uint8).numpy().tobytes())
    lora = request.lora_request
    h.update(b"lora:" + (str(lora.lora_int_id).encode() if lora is not None else b"-"))
    return h.digest()


class Planner:
    def __init__(self, block_size: int, block_bytes: int, budget_bytes: int) -> None:
        self.block_size = block_size
        self.block_bytes = block_bytes  # one block of every layer
        self.budget_bytes = budget_bytes
        self._stored: OrderedDict[bytes, int] = OrderedDict()  # key -> bytes in the worker, LRU
        self._stored_bytes = 0
        self._requests: dict[str, tuple[bytes, int]] = {}  # request id -> (key, virtual tokens)
        self._offered: dict[str, tuple[bytes, int]] = {}  # request id -> (key, first token)
        self._loading: dict[str, tuple[bytes, int]] = {}  # loads admitted this step

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.block_size)

    def add_request(self, request) -> None:
        count = virtual_tokens(request)
        # The last prompt position must be computed to sample from, so it is never loaded.
        count = min(count, request.num_prompt_tokens - 1)
        if count > 0 and self.blocks_for(count) * self.block_bytes <= self.budget_bytes:
            self._requests[request.request_id] = (request_key(request, count), count)

    def finish_request(self, request_id: str) -> None:
        self._requests.pop(request_id, None)
        self._offered.pop(request_id, None)

    def matched_tokens(self, request, num_computed: int) -> int:
        """Tokens the store can provide beyond the `num_computed` found in the prefix cache."""
        entry = self._requests.get(request.request_id)
        if entry is None or entry[0] not in self._stored or num_computed >= entry[1]:
            return 0
        key, count = entry
        self._offered[request.request_id] = (key, num_computed)
        return count - num_computed

    def admitted(self, request_id: str, num_external: int) -> None:
        """The scheduler allocated blocks for a request, with `num_external` tokens to load."""
        offer = self._offered.pop(request_id, None)
        if num_external > 0 and offer is not None:
            self._loading[request_id] = offer

    def build(self, scheduled_new, scheduled_cached, num_scheduled: dict[str, int]) -> StepPlan:
        """This step's plan; `scheduled_*` are the scheduler output's request lists."""
        plan = StepPlan()
        started = [(req_id, blocks, computed, self._requests[req_id])
                   for req_id, blocks, computed in self._scheduled(scheduled_new, scheduled_cached)
                   if req_id in self._requests]
        # Loads first: they make their entries the most recent before a save evicts any.
        for req_id, block_ids, _, (key, count) in started:
            load = self._loading.pop(req_id, None)
            if load is not None:
                first = load[1] // self.block_size
                plan.loads.append(Load(key, first, block_ids[first:self.blocks_for(count)]))
                self._stored.move_to_end(key)
        for req_id, block_ids, computed, (key, count) in started:
            if key not in self._stored and computed + num_scheduled[req_id] >= count:
                blocks = self.blocks_for(count)
                plan.saves.append(Save(key, block_ids[:blocks]))
                self._store(key, blocks * self.block_bytes, plan)
        self._loading.clear()
        return plan

    def _scheduled(self, scheduled_new, scheduled_cached):
        """(request id, all its block ids, computed tokens) of requests starting or resuming."""
        for new in scheduled_new:
            yield new.req_id, new.block_ids[0], new.num_computed_tokens
        for i, req_id in enumerate(scheduled_cached.req_ids):
            if req_id in scheduled_cached.resumed_req_ids and scheduled_cached.new_block_ids[i]:
                # A resumed request's new_block_ids are all of its blocks.
                yield req_id, scheduled_cached.new_block_ids[i][0], scheduled_cached.num_computed_tokens[i]

    def _store(self, key: bytes, size: int, plan: StepPlan) -> None:
        self._stored[key] = size
        self._stored_bytes += size
        while self._stored_bytes > self.budget_bytes:
            old, old_size = self._stored.popitem(last=False)
            self._stored_bytes -= old_size
            plan.evictions.append(old)
