"""The time-budgeted schedule anneals to zero when the clock (not the step count) runs out."""

from __future__ import annotations

import torch

from training.methods.budget import Clock, budget_schedule


def test_schedule_follows_whichever_runs_out_first():
    clock = Clock(minutes=1.0)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = budget_schedule(opt, "cosine", warmup_steps=0, max_steps=1000, clock=clock)
    assert sched.lr_lambdas[0](0) > 0.999
    assert 0.49 < sched.lr_lambdas[0](500) < 0.51  # half the steps, no time spent
    clock.start -= 60  # the whole budget spent
    assert sched.lr_lambdas[0](10) < 1e-9
