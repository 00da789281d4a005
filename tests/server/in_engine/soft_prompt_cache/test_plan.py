"""The scheduler-side plan: who saves the virtual tokens' KV, who loads it, what is evicted."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from server.in_engine.soft_prompt_cache.plan import Load, Planner, Save, virtual_tokens

BLOCK = 4
HIDDEN = 8


def request(rid, virtual=3, text=5, rows=None, lora=None):
    rows = rows if rows is not None else torch.arange(virtual * HIDDEN, dtype=torch.float32).view(virtual, HIDDEN)
    embeds = torch.cat([rows, torch.zeros(text, HIDDEN)]) if virtual else None
    return SimpleNamespace(
        request_id=rid, prompt_embeds=embeds,
        prompt_is_token_ids=[False] * virtual + [True] * text if virtual else None,
        num_prompt_tokens=virtual + text,
        lora_request=None if lora is None else SimpleNamespace(lora_int_id=lora))


def new(rid, blocks, computed=0):
    return SimpleNamespace(req_id=rid, block_ids=(blocks,), num_computed_tokens=computed)


NO_CACHED = SimpleNamespace(req_ids=[], resumed_req_ids=set(), new_block_ids=[], num_computed_tokens=[])


def step(planner, *scheduled, cached=NO_CACHED):
    """Admit and plan one scheduler step of requests (request, blocks, computed, scheduled)."""
    for req, _, computed, _ in scheduled:
        planner.admitted(req.request_id, planner.matched_tokens(req, computed))
    return planner.build([new(r.request_id, b, c) for r, b, c, _ in scheduled], cached,
                         {r.request_id: n for r, _, _, n in scheduled})


def planner(budget_blocks=100):
    return Planner(block_size=BLOCK, block_bytes=10, budget_bytes=10 * budget_blocks)


def test_virtual_tokens_are_the_leading_embedding_positions():
    assert virtual_tokens(request("a", virtual=3)) == 3
    assert virtual_tokens(request("b", virtual=0)) == 0


def test_first_request_saves_its_blocks_then_the_next_loads_them():
    p = planner()
    a, b = request("a", virtual=6), request("b", virtual=6, text=9)
    for r in (a, b):
        p.add_request(r)
    assert p.matched_tokens(a, 0) == 0
    first = step(p, (a, [10, 11, 12], 0, 11))
    key = first.saves[0].key
    assert first.saves == [Save(key, [10, 11])] and not first.loads  # 6 tokens: 2 blocks
    assert p.matched_tokens(b, 0) == 6
    second = step(p, (b, [20, 21, 22, 23], 0, 9))
    assert second.loads == [Load(key, 0, [20, 21])] and not second.saves


def test_load_starts_after_blocks_found_in_the_prefix_cache():
    p = planner()
    a, b = request("a", virtual=6), request("b", virtual=6)
    p.add_request(a), p.add_request(b)
    step(p, (a, [10, 11, 12], 0, 11))
    assert p.matched_tokens(b, 4) == 2  # block 0 came from vLLM's prefix cache
    plan = step(p, (b, [10, 21, 22], 4, 7))
    assert [(op.first, op.block_ids) for op in plan.loads] == [(1, [21])]
    assert p.matched_tokens(request("c", virtual=6), 8) == 0  # nothing beyond a longer local hit


def test_key_is_the_rows_and_the_lora():
    p = planner()
    base, other_rows = request("a"), request("b", rows=torch.ones(3, HIDDEN))
    lora1, lora2 = request("c", lora=1), request("d", lora=2)
    for r in (base, other_rows, lora1, lora2):
        p.add_request(r)
    step(p, (base, [1, 2], 0, 8))
    assert p.matched_tokens(request("e"), 0) == 0  # not added: unknown to the planner
    assert [p.matched_tokens(r, 0) for r in (other_rows, lora1, lora2)] == [0, 0, 0]
    step(p, (lora1, [3, 4], 0, 8))
    assert p.matched_tokens(lora1, 0) == 3 and p.matched_tokens(lora2, 0) == 0


def test_last_prompt_position_is_always_computed():
    p = planner()
    only_virtual = request("a", virtual=5, text=1)
    twin = request("b", virtual=5, text=1)
    p.add_request(only_virtual), p.add_request(twin)
    step(p, (only_virtual, [1, 2], 0, 6))
    assert p.matched_tokens(twin, 0) == 5  # of 6 prompt positions


def test_no_save_until_a_step_has_computed_every_virtual_token():
    p = planner()
    a = request("a", virtual=6)
    p.add_request(a)
    assert step(p, (a, [1, 2], 0, 4)).saves == []  # chunked prefill: 4 of 6 so far


def test_requests_without_soft_prompt_or_too_big_for_the_budget_are_ignored():
    p = planner(budget_blocks=1)
    plain, big = request("a", virtual=0), request("b", virtual=6)  # 6 tokens = 2 blocks > budget
    p.add_request(plain), p.add_request(big)
    assert step(p, (plain, [1], 0, 5), (big, [2, 3, 4], 0, 11)).saves == []


def test_least_recently_used_entry_is_evicted_over_budget():
    p = planner(budget_blocks=2)
    reqs = [request(str(i), rows=torch.full((3, HIDDEN), float(i))) for i in range(3)]
    for r in reqs:
        p.add_request(r)
    key0 = step(p, (reqs[0], [1, 2], 0, 8)).saves[0].key
    key1 = step(p, (reqs[1], [3, 4], 0, 8)).saves[0].key
    again = request("0b", rows=torch.full((3, HIDDEN), 0.0))
    p.add_request(again)
    assert step(p, (again, [5, 6], 0, 5)).loads[0].key == key0  # 0 is now the most recent
    plan = step(p, (reqs[2], [7, 8], 0, 8))
    assert plan.evictions == [key1]
    assert p.matched_tokens(reqs[1], 0) == 0 and p.matched_tokens(reqs[0], 0) == 3


def test_entry_loaded_in_a_step_is_not_the_one_its_saves_evict():
    p = planner(budget_blocks=2)
    old, newer, fresh = (request(str(i), rows=torch.full((3, HIDDEN), float(i))) for i in range(3))
    loader = request("loader", rows=torch.full((3, HIDDEN), 0.0))
    for r in (old, newer, fresh, loader):
        p.add_request(r)
    key_old = step(p, (old, [1, 2], 0, 8)).saves[0].key
    key_newer = step(p, (newer, [3, 4], 0, 8)).saves[0].key
    # One step: `fresh` saves (over budget) while `loader` loads the least recent entry.
    plan = step(p, (fresh, [5, 6], 0, 8), (loader, [7, 8], 0, 5))
    assert [op.key for op in plan.loads] == [key_old] and plan.evictions == [key_newer]


def test_resumed_request_loads_into_all_its_new_blocks():
    p = planner()
    a, b = request("a", virtual=6), request("b", virtual=6)
    p.add_request(a), p.add_request(b)
    step(p, (a, [1, 2, 3], 0, 11))
    p.admitted("b", p.matched_tokens(b, 0))
    resumed = SimpleNamespace(req_ids=["b"], resumed_req_ids={"b"}, new_block_ids=[([7, 8, 9],)],
                              num_computed_tokens=[6])
    plan = p.build([], resumed, {"b": 5})
    assert [(op.first, op.block_ids) for op in plan.loads] == [(0, [7, 8])]


def test_finished_requests_are_forgotten():
    p = planner()
    a = request("a")
    p.add_request(a)
    p.finish_request("a")
    assert step(p, (a, [1, 2], 0, 8)).saves == []
