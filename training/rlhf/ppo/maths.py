"""PPO's arithmetic as pure functions on tensors (no models): easy to check by hand.

Shapes: B sequences (rollouts) x T response tokens; `mask` [B, T] is 1.0 on real response
tokens (up to and including eos) and 0.0 on padding after them. Every mean is over real tokens.

    kl = kl_per_token(logp, ref_logp, "k1")            # [B, T]   log π(a|s) - log π_ref(a|s)
    r = shaped_rewards(score, kl, kl_coef, mask)        # [B, T]   -β·kl, + score on the last token
    adv, ret = gae(r, values, mask, gamma=1, lam=0.95)  # [B, T]   advantages, returns (value targets)
    adv = whiten(adv, mask)
    loss_pi, clipfrac = policy_loss(new_logp, logp, adv, mask, clip=0.2)
    loss_v, vclipfrac = value_loss(new_values, values, ret, mask, clip=0.2)

References: Schulman et al. 2017 (PPO), Schulman et al. 2016 (GAE), Ziegler et al. 2019 /
Ouyang et al. 2022 (per-token KL penalty, adaptive KL coefficient), Schulman 2020 "Approximating
KL divergence" (k1, k3 estimators).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

KLEstimator = Literal["k1", "k3"]


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def kl_per_token(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: KLEstimator = "k1") -> torch.Tensor:
    """Per-token estimate of KL(π || π_ref) from the log-probs of tokens sampled from π.

    With log r = ref_logp - logp (r = π_ref/π):
      k1 = -log r            unbiased, can be negative per token (the classic RLHF penalty)
      k3 = (r - 1) - log r   unbiased and always >= 0, lower variance when π is close to π_ref
    """
    log_ratio = ref_logp - logp
    if estimator == "k1":
        return -log_ratio
    if estimator == "k3":
        return torch.expm1(log_ratio) - log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r} (k1 or k3)")


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """[B] index of the last real token of each row (0 for an empty row)."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return (positions * mask.long()).amax(dim=1)


def shaped_rewards(score: torch.Tensor, kl: torch.Tensor, kl_coef: float, mask: torch.Tensor) -> torch.Tensor:
    """[B, T] per-token rewards: -kl_coef * kl on every real token, plus the sequence `score` [B] on its last one."""
    rewards = -kl_coef * kl * mask
    rewards[torch.arange(len(score), device=mask.device), last_token_index(mask)] += score
    return rewards


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation over the response tokens; returns (advantages, returns).

    δ_t = r_t + γ V_{t+1} - V_t, with V = 0 after the last real token (the episode ends there);
    A_t = δ_t + γλ A_{t+1};  returns R_t = A_t + V_t are the value targets. Padding gets 0.
    """
    values = values * mask
    B, T = rewards.shape
    advantages = torch.zeros_like(rewards)
    next_adv = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)
    next_value = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)
    for t in reversed(range(T)):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_adv = (delta + gamma * lam * next_adv) * mask[:, t]
        advantages[:, t] = next_adv
        next_value = values[:, t]
    return advantages, (advantages + values) * mask


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8,
           all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """(x - mean) / std over the real tokens (population variance); padding stays 0.

    shift_mean=False only rescales (keeps the sign of every entry), as for rewards. `all_reduce`
    sums a tensor over data-parallel processes: the statistics are then over every process's
    tokens, as one process holding all the rollouts would compute them."""
    total = all_reduce or (lambda t: t)
    count = total(mask.sum()).clamp(min=1)
    mean = total((x * mask).sum()) / count
    var = total((((x - mean) ** 2) * mask).sum()) / count
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                clip: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped surrogate: mean over tokens of max(-A·ρ, -A·clip(ρ, 1-ε, 1+ε)), ρ = π/π_old.

    Returns (loss, fraction of tokens where the clipped term was the larger one)."""
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clipfrac = masked_mean((clipped > unclipped).float(), mask)
    return loss, clipfrac


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped value loss: ½ · mean over tokens of max((V - R)², (V_old + clip(V - V_old, ±ε) - R)²).

    Returns (loss, fraction of tokens where the clipped error was the larger one)."""
    clipped_values = old_values + torch.clamp(values - old_values, -clip, clip)
    err = (values - returns) ** 2
    err_clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(err, err_clipped), mask)
    clipfrac = masked_mean((err_clipped > err).float(), mask)
    return loss, clipfrac


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """[..., V] logits -> [...] entropy of the softmax, in nats."""
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


class FixedKLController:
    """A constant KL coefficient β."""

    def __init__(self, value: float) -> None:
        self.value = value

    def update(self, kl: float, n_steps: int) -> float:
        return self.value


class AdaptiveKLController:
    """β that steers the observed KL toward `target` (Ziegler et al. 2019, eq. 2):

    e = clip(KL / target - 1, -0.2, 0.2);  β ← β · (1 + e · n_steps / horizon)
    where n_steps is the number of rollouts (sequences) the KL was measured on.
    """

    def __init__(self, value: float, target: float, horizon: float) -> None:
        if target <= 0 or horizon <= 0:
            raise ValueError("adaptive KL needs target > 0 and horizon > 0")
        self.value, self.target, self.horizon = value, target, horizon

    def update(self, kl: float, n_steps: int) -> float:
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value
