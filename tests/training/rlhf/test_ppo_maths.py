"""PPO maths against numbers worked out by hand (the derivation is in each test's comments)."""

from __future__ import annotations

import math

import pytest
import torch

from training.rlhf.ppo.maths import (
    AdaptiveKLController,
    FixedKLController,
    entropy_from_logits,
    gae,
    kl_per_token,
    policy_loss,
    shaped_rewards,
    value_loss,
    whiten,
)


def t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def close(a, b, tol=1e-4):
    return torch.allclose(torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32), atol=tol)


def test_kl_estimators():
    # token 1: π = 0.5, π_ref = 0.25: k1 = log(0.5/0.25) = log 2 = 0.693147
    #          r = π_ref/π = 0.5: k3 = (r - 1) - log r = -0.5 + 0.693147 = 0.193147
    # token 2: π = 0.2, π_ref = 0.4: k1 = log(0.5) = -0.693147 (k1 can be negative per token)
    #          r = 2: k3 = 1 - log 2 = 0.306853
    logp, ref = torch.log(t(0.5, 0.2)), torch.log(t(0.25, 0.4))
    assert close(kl_per_token(logp, ref, "k1"), [0.693147, -0.693147])
    assert close(kl_per_token(logp, ref, "k3"), [0.193147, 0.306853])
    assert close(kl_per_token(logp, logp, "k3"), [0.0, 0.0])
    with pytest.raises(ValueError):
        kl_per_token(logp, ref, "k2")


def test_shaped_rewards_put_the_score_on_the_last_real_token():
    # kl = [0.1, 0.2, 0.3], mask [1, 1, 0], β = 0.5: -β·kl = [-0.05, -0.1, (pad) 0]; score 2 goes on token 1.
    r = shaped_rewards(t(2.0), t([0.1, 0.2, 0.3]), 0.5, t([1, 1, 0]))
    assert close(r, [[-0.05, 1.9, 0.0]])


def test_gae_full_mask():
    # r = [0, 0, 1], V = [0.5, 0.6, 0.7], γ = 1, λ = 0.5; V after the end = 0.
    # t=2: δ = 1 + 0 - 0.7 = 0.3;               A2 = 0.3
    # t=1: δ = 0 + 0.7 - 0.6 = 0.1;             A1 = 0.1 + 0.5·0.3 = 0.25
    # t=0: δ = 0 + 0.6 - 0.5 = 0.1;             A0 = 0.1 + 0.5·0.25 = 0.225
    # returns = A + V = [0.725, 0.85, 1.0]
    adv, ret = gae(t([0.0, 0.0, 1.0]), t([0.5, 0.6, 0.7]), t([1, 1, 1]), gamma=1.0, lam=0.5)
    assert close(adv, [[0.225, 0.25, 0.3]])
    assert close(ret, [[0.725, 0.85, 1.0]])


def test_gae_stops_at_the_end_of_the_response():
    # mask [1, 1, 0]: the episode ends at t=1; the padded value 9 must not leak in.
    # r = [0, 1, -], V = [0.5, 0.6, -], γ = 0.9, λ = 1
    # t=1: δ = 1 + 0.9·0 - 0.6 = 0.4;           A1 = 0.4
    # t=0: δ = 0 + 0.9·0.6 - 0.5 = 0.04;        A0 = 0.04 + 0.9·0.4 = 0.4
    # returns = [0.9, 1.0, 0]
    adv, ret = gae(t([0.0, 1.0, 5.0]), t([0.5, 0.6, 9.0]), t([1, 1, 0]), gamma=0.9, lam=1.0)
    assert close(adv, [[0.4, 0.4, 0.0]])
    assert close(ret, [[0.9, 1.0, 0.0]])


def test_whiten_over_real_tokens_only():
    # x = [1, 2, 3] (+ padding 100): mean 2, population variance (1 + 0 + 1)/3 = 2/3, std 0.816497
    # (x - 2)/0.816497 = [-1.224745, 0, 1.224745]; padding -> 0
    x, mask = t([1.0, 2.0, 3.0, 100.0]), t([1, 1, 1, 0])
    assert close(whiten(x, mask), [[-1.224745, 0.0, 1.224745, 0.0]])
    # shift_mean=False adds the mean back: [0.775255, 2, 3.224745]
    assert close(whiten(x, mask, shift_mean=False), [[0.775255, 2.0, 3.224745, 0.0]])


def test_clipped_policy_loss():
    # old log-probs 0, ratios ρ = [1.5, 0.5, 1.1], A = [1, 1, -2], ε = 0.2
    # token 0: -Aρ = -1.5, -A·clip(ρ) = -1.2 -> max -1.2 (clipped term wins)
    # token 1: -Aρ = -0.5, -A·clip(ρ) = -0.8 -> max -0.5
    # token 2: -Aρ =  2.2, -A·clip(ρ) =  2.2 -> max  2.2 (inside the range)
    # loss = (-1.2 - 0.5 + 2.2)/3 = 0.166667, clip fraction 1/3
    logp = torch.log(t([1.5, 0.5, 1.1]))
    loss, clipfrac = policy_loss(logp, torch.zeros_like(logp), t([1.0, 1.0, -2.0]), t([1, 1, 1]), clip=0.2)
    assert close(loss, 0.166667)
    assert close(clipfrac, 1 / 3)


def test_clipped_policy_loss_gradient_vanishes_when_clipped():
    # Token 0 above (ρ = 1.5 > 1.2, A > 0) is clipped: no gradient flows to its log-prob.
    logp = torch.log(t([1.5, 0.5])).requires_grad_()
    loss, _ = policy_loss(logp, torch.zeros(1, 2), t([1.0, 1.0]), t([1, 1]), clip=0.2)
    loss.backward()
    # d/dlogp of -A·ρ/2 for token 1 = -A·ρ/2 = -0.25
    assert close(logp.grad, [[0.0, -0.25]])


def test_clipped_value_loss():
    # V_old = [0, 0], V = [0.5, -0.1], R = [1, 0], ε = 0.2
    # token 0: V_clip = 0.2: (V - R)² = 0.25, (V_clip - R)² = 0.64 -> 0.64 (clipped wins)
    # token 1: V_clip = -0.1: both 0.01 -> 0.01
    # loss = ½ · (0.64 + 0.01)/2 = 0.1625, clip fraction 1/2
    loss, clipfrac = value_loss(t([0.5, -0.1]), t([0.0, 0.0]), t([1.0, 0.0]), t([1, 1]), clip=0.2)
    assert close(loss, 0.1625)
    assert close(clipfrac, 0.5)


def test_entropy():
    # uniform over 4 tokens: log 4 = 1.386294
    assert close(entropy_from_logits(torch.zeros(1, 4)), [1.386294])


def test_kl_controllers():
    assert FixedKLController(0.05).update(100.0, 64) == 0.05
    # KL 9 vs target 6: e = clip(0.5) = 0.2; β = 0.1·(1 + 0.2·256/10000) = 0.100512
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    assert math.isclose(ctl.update(9.0, 256), 0.100512, rel_tol=1e-9)
    # KL 6.6: e = 0.1, n = 1000: β·(1 + 0.01)
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    assert math.isclose(ctl.update(6.6, 1000), 0.101, rel_tol=1e-9)
    # KL 3 (below target): e = clip(-0.5) = -0.2, n = 1000: β·(1 - 0.02) = 0.098
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    assert math.isclose(ctl.update(3.0, 1000), 0.098, rel_tol=1e-9)
