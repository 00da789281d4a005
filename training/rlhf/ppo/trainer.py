"""PPO with a KL penalty against the reference policy (InstructGPT's RL step), on a LoRA policy.

    python -m training ppo --config training/recipes/rlhf/ppo-demo.yaml [--publish]

One iteration (train.max_steps of them):
  1. rollout   sample `rollout_batch` prompts; the policy (base + LoRA) samples a response each
  2. score     the reward model scores (prompt, response); optional missing-eos penalty
  3. evaluate  old log-probs and values (LoRA on), reference log-probs (same model, LoRA disabled:
               the reference costs no memory), per-token KL, shaped rewards, GAE, whitened advantages
  4. optimise  `ppo_epochs` passes over the rollouts in shuffled minibatches of train.batch_size:
               clipped policy loss + value_coef * clipped value loss, gradient clipping
  5. adapt β   with the measured KL (adaptive controller) if kl_target is set
The critic is a linear head on the policy's last hidden state (the LoRA'd trunk is shared);
it is saved as RUN/value_head.safetensors. RUN/adapter is a plain PEFT LoRA: the server serves it.

With --rollout-server URL (training/rlhf/rollout_server.py) steps 1 and the reference of step 3
run on that server instead: the policy is published to it as a new adapter version every
`publish_every` iterations, it samples the responses, and its base model scores the reference.
The rest (old log-probs, values, the losses) stays in the trainer, so a step's losses are the
same as in-process ones given the same responses (tests/training/rlhf/test_rollout_server.py).

Data-parallel on several processes (torchrun --nproc-per-node N -m training ppo ...): each
process collects its own rollout_batch (its own prompts and samples), advantages are whitened
and KL / score statistics averaged over every process's rollouts, and gradients are all-reduced
by the Accelerator's DDP wrapper, so every process holds the same weights (checked at the end);
only the main process writes the run directory.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from typing import Literal

import torch
from peft import get_peft_model
from safetensors.torch import save_file

from training.recipe import Recipe
from training.devices import autocast_bf16, gradient_checkpointing, training_dtype
from training.distributed import check_same_weights, on_main_then_wait
from training.rlhf.common import (
    RewardModelConfig,
    RolloutConfig,
    finish_policy,
    load_policy_base,
    policy_lora,
    policy_method,
    save_policy,
    sections,
    start,
)
from training.rlhf.ppo import maths
from training.rlhf.preferences import PreferenceSplits, load_preferences
from training.rlhf.rollout import Batch, forward, generate, pack
from training.rlhf.rollout_server import RolloutServerConfig, ServedPolicy

log = logging.getLogger("training")


@dataclass
class PPOOptions:
    """PPO: rollouts, the KL penalty, GAE and the clipped losses."""

    rollout_batch: int = 32
    """Prompts (so responses) per iteration and process; each iteration then makes ppo_epochs * rollout_batch /
    batch_size updates (with N processes, each update averages N minibatches' gradients)."""
    ppo_epochs: int = 4
    """Passes over each rollout batch (minibatches of train.batch_size)."""
    clip_range: float = 0.2
    """ε of the clipped policy ratio π/π_old ∈ [1-ε, 1+ε]."""
    value_clip_range: float = 0.2
    """ε of the clipped value update |V - V_old| <= ε."""
    value_coef: float = 0.1
    """Weight of the value loss in the total loss."""
    gamma: float = 1.0
    """Discount over response tokens (1: the episode is one response)."""
    lam: float = 0.95
    """GAE λ: 0 is one-step TD (low variance, biased), 1 is Monte Carlo returns."""
    kl_coef: float = 0.05
    """β of the per-token penalty -β·KL(π || π_ref) added to the reward (initial value if adaptive)."""
    kl_target: float | None = None
    """If set, adapt β so the KL per response tends to this (Ziegler et al.); None keeps β fixed."""
    kl_horizon: float = 10000.0
    """Adaptive KL horizon, in rollouts: how fast β moves."""
    kl_estimator: Literal["k1", "k3"] = "k1"
    """Per-token KL estimator in the penalty: k1 = log π/π_ref, k3 = (r-1) - log r (non-negative)."""
    whiten_advantages: bool = True
    """Normalise advantages to mean 0, std 1 over each rollout batch."""

    def validate(self) -> None:
        if self.rollout_batch < 1 or self.ppo_epochs < 1:
            raise ValueError("ppo.rollout_batch and ppo.ppo_epochs must be >= 1")
        if not 0 < self.clip_range < 1:
            raise ValueError("ppo.clip_range must be in (0, 1)")


SECTIONS = sections(reward=RewardModelConfig, rollout=RolloutConfig, server=RolloutServerConfig, ppo=PPOOptions)
METHOD = policy_method("ppo", "PPO policy (LoRA) against a reward model, KL-penalised")


@dataclass
class Rollouts:
    """One iteration's experience, all [B, T] except `score` [B]."""

    batch: Batch
    logp: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    score: torch.Tensor
    kl: torch.Tensor


def ppo_accelerator(bf16: bool = False):
    """An Accelerator for PPO: DDP over this launch's processes (gloo without CUDA), bf16 autocast if asked."""
    from accelerate import Accelerator, DistributedType
    from accelerate.state import AcceleratorState

    # A Trainer run earlier in this process leaves accelerate's singleton state configured with its
    # own settings, which a new Accelerator may not change; reset it, as transformers' Trainer does.
    AcceleratorState._reset_state(reset_partial_state=True)
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision="bf16" if bf16 else "no")
    if accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED, DistributedType.MEGATRON_LM):
        raise ValueError(f"ppo trains data-parallel (DDP) only, not {accelerator.distributed_type.value}: launch it "
                         "with torchrun or training/accelerate/ddp.yaml (the LoRA policy and value head are small)")
    return accelerator


class PPOTrainer:
    """Owns the policy (PeftModel), the value head, the reward scorer and the optimiser.

    `policy` and `value_head` are the plain modules (generation, the adapter-disabled reference,
    saving); the optimisation step runs through their DDP wrappers, which all-reduce gradients.
    `served`: the policy on a rollout server, which then samples and scores the reference."""

    def __init__(self, policy, tokenizer, scorer, prompts: list[str], opts: PPOOptions, rollout: RolloutConfig,
                 learning_rate: float, batch_size: int, max_grad_norm: float = 1.0, seed: int = 0,
                 accelerator=None, served: ServedPolicy | None = None) -> None:
        if served is not None and rollout.temperature != 1.0:
            raise ValueError("rollouts through a server sample at rollout.temperature 1.0: the server's reference "
                             "log-probabilities are the base model's own, at temperature 1")
        self.served, self.iteration = served, 0
        self.accelerator = acc = accelerator or ppo_accelerator()
        self.tokenizer, self.scorer = tokenizer, scorer
        self.prompts = prompts
        self.prompt_ids = {p: tokenizer(p).input_ids for p in prompts}
        self.opts, self.rollout_cfg = opts, rollout
        self.batch_size, self.max_grad_norm = batch_size, max_grad_norm
        hidden = policy.get_base_model().config.get_text_config().hidden_size
        torch.manual_seed(seed)  # the same value head in every process (DDP also broadcasts rank 0's)
        value_head = torch.nn.Linear(hidden, 1)
        torch.nn.init.zeros_(value_head.weight)
        torch.nn.init.zeros_(value_head.bias)
        self.params = [p for p in policy.parameters() if p.requires_grad] + list(value_head.parameters())
        optimizer = torch.optim.AdamW(self.params, lr=learning_rate, weight_decay=0.0)
        self.policy_ddp, self.value_ddp, self.optimizer = acc.prepare(policy, value_head, optimizer)
        self.policy, self.value_head = acc.unwrap_model(self.policy_ddp), acc.unwrap_model(self.value_ddp)
        self.device = acc.device
        self.kl_ctl = (maths.AdaptiveKLController(opts.kl_coef, opts.kl_target, opts.kl_horizon)
                       if opts.kl_target else maths.FixedKLController(opts.kl_coef))
        # Each process samples its own prompts and responses.
        self.rng = random.Random(seed + acc.process_index)
        torch.manual_seed(seed + acc.process_index)
        # Dropout off everywhere: old and new log-probs must come from the same function.
        self.policy.eval()

    def sum_over_processes(self, t: torch.Tensor) -> torch.Tensor:
        return self.accelerator.reduce(t, reduction="sum")

    def mean_over_processes(self, value: torch.Tensor | float) -> float:
        return self.accelerator.reduce(torch.as_tensor(value, dtype=torch.float32, device=self.device),
                                       reduction="mean").item()

    @torch.no_grad()
    def collect(self) -> Rollouts:
        tok, cfg = self.tokenizer, self.rollout_cfg
        prompts = [self.rng.choice(self.prompts) for _ in range(self.opts.rollout_batch)]
        ids = [self.prompt_ids[p] for p in prompts]
        seed = self.rng.getrandbits(63)  # drawn either way: both engines see the same prompts
        if self.served is None:
            responses = generate(self.policy, ids, tok.pad_token_id, tok.eos_token_id, cfg.response_length,
                                 sample=not cfg.greedy, temperature=cfg.temperature)
        else:
            responses, _ = self.served.sample(ids, cfg.response_length, cfg.temperature, cfg.greedy,
                                              seed if self.served.seeded else None)
        batch = pack(ids, responses, tok.pad_token_id).to(self.device)
        texts = tok.batch_decode([r for r in responses], skip_special_tokens=True)
        score = self.scorer.score(prompts, texts).to(self.device)
        if cfg.missing_eos_penalty is not None:
            ended = torch.tensor([bool(r) and r[-1] == tok.eos_token_id for r in responses], device=self.device)
            score = score - cfg.missing_eos_penalty * (~ended).float()
        logp, values, _ = forward(self.policy, batch, self.value_head, cfg.temperature)
        mask = batch.response_mask
        if self.served is None:
            with self.policy.disable_adapter():
                ref_logp, _, _ = forward(self.policy, batch, None, cfg.temperature)
        else:
            ref_logp = torch.zeros_like(logp)
            for i, row in enumerate(self.served.reference_logprobs(ids, responses)):
                ref_logp[i, :len(row)] = torch.tensor(row, dtype=ref_logp.dtype)
        kl = maths.kl_per_token(logp, ref_logp, self.opts.kl_estimator) * mask
        rewards = maths.shaped_rewards(score, kl, self.kl_ctl.value, mask)
        advantages, returns = maths.gae(rewards, values, mask, self.opts.gamma, self.opts.lam)
        if self.opts.whiten_advantages:
            advantages = maths.whiten(advantages, mask, all_reduce=self.sum_over_processes)
        return Rollouts(batch, logp, values * mask, advantages, returns, score, kl)

    def optimise(self, ro: Rollouts) -> dict[str, float]:
        opts, n = self.opts, len(ro.score)
        stats: dict[str, list[float]] = {"policy_loss": [], "value_loss": [], "clipfrac": [], "vf_clipfrac": [],
                                         "approx_kl": [], "entropy": []}
        for _ in range(opts.ppo_epochs):
            order = torch.randperm(n).to(self.device)
            for start in range(0, n, self.batch_size):
                idx = order[start:start + self.batch_size]
                b = ro.batch
                mb = Batch(b.ids[idx], b.attention[idx], b.prompt_len, b.response[idx], b.response_mask[idx])
                # Through the DDP wrappers: backward all-reduces the gradients.
                logp, values, logits = forward(self.policy_ddp, mb, self.value_ddp, self.rollout_cfg.temperature)
                mask = mb.response_mask
                pg_loss, clipfrac = maths.policy_loss(logp, ro.logp[idx], ro.advantages[idx], mask, opts.clip_range)
                vf_loss, vf_clipfrac = maths.value_loss(values, ro.values[idx], ro.returns[idx], mask,
                                                        opts.value_clip_range)
                loss = pg_loss + opts.value_coef * vf_loss
                self.optimizer.zero_grad()
                self.accelerator.backward(loss)
                self.accelerator.clip_grad_norm_(self.params, self.max_grad_norm)
                self.optimizer.step()
                with torch.no_grad():
                    stats["policy_loss"].append(pg_loss.item())
                    stats["value_loss"].append(vf_loss.item())
                    stats["clipfrac"].append(clipfrac.item())
                    stats["vf_clipfrac"].append(vf_clipfrac.item())
                    # k3 between the rollout policy and the current one: how far an iteration moved.
                    stats["approx_kl"].append(maths.masked_mean(
                        maths.kl_per_token(ro.logp[idx], logp, "k3"), mask).item())
                    stats["entropy"].append(maths.masked_mean(maths.entropy_from_logits(logits), mask).item())
        return {k: self.mean_over_processes(sum(v) / len(v)) for k, v in stats.items()}

    def step(self) -> dict[str, float]:
        """One iteration; the statistics are means over every process's rollouts (the same everywhere)."""
        self.iteration += 1
        # The main process publishes the policy when a version is due; every process samples it.
        if self.served is not None and self.served.sync(self.policy, self.iteration,
                                                        write=self.accelerator.is_main_process):
            self.accelerator.wait_for_everyone()
        ro = self.collect()
        kl_per_response = self.mean_over_processes(ro.kl.sum(-1).mean())
        beta = self.kl_ctl.value
        stats = self.optimise(ro)
        self.kl_ctl.update(kl_per_response, len(ro.score) * self.accelerator.num_processes)
        stats.update(score=self.mean_over_processes(ro.score.mean()), kl=kl_per_response, kl_coef=beta,
                     response_tokens=self.mean_over_processes(ro.batch.response_mask.sum(-1).mean()),
                     non_score_reward=-beta * kl_per_response)
        for k, v in stats.items():
            if not (v == v and abs(v) != float("inf")):
                raise FloatingPointError(f"PPO: {k} is {v}; lower the learning rate or kl_coef")
        return stats


def train_ppo(recipe: Recipe) -> dict:
    from training.rlhf.reward import RewardScorer

    facts, out, tokenizer = start(recipe, METHOD)
    if not recipe.reward.reward_model:
        raise ValueError("ppo needs a reward model: set reward.reward_model (or --reward-model RUN/reward)")
    if gradient_checkpointing(recipe):
        log.warning("ppo: train.gradient_checkpointing has no effect here: the policy runs in eval mode (dropout "
                    "off, see PPOTrainer), and transformers checkpoints layers only in train mode")
    data = load_preferences(recipe.data, tokenizer, seed=recipe.train.seed)
    scorer = RewardScorer(recipe.reward.reward_model, recipe.reward.reward_batch_size)
    policy = get_peft_model(load_policy_base(recipe.model.base, training_dtype(recipe)), policy_lora(recipe))
    t, server = recipe.train, recipe.server
    served = ServedPolicy.from_config(server, out, recipe.output.name or f"{out.name}-ppo") \
        if server.rollout_server else None
    trainer = PPOTrainer(policy, tokenizer, scorer, PreferenceSplits.prompts(data.train), recipe.ppo, recipe.rollout,
                         t.learning_rate, t.batch_size, t.max_grad_norm, t.seed, ppo_accelerator(autocast_bf16(recipe)),
                         served)
    main = trainer.accelerator.is_main_process
    iterations = t.max_steps if t.max_steps > 0 else 100
    history, started = [], time.monotonic()
    try:
        for it in range(1, iterations + 1):
            stats = trainer.step()
            history.append({"iteration": it, **{k: round(v, 5) for k, v in stats.items()}})
            if main and (it == 1 or it % max(1, t.logging_steps) == 0 or it == iterations):
                log.warning("ppo %d/%d: score %.3f  kl %.3f  β %.4f  policy %.4f  value %.4f  clip %.2f  "
                            "entropy %.2f", it, iterations, stats["score"], stats["kl"], stats["kl_coef"],
                            stats["policy_loss"], stats["value_loss"], stats["clipfrac"], stats["entropy"])
    finally:
        if served is not None:
            served.close(unload=main)
    seconds = round(time.monotonic() - started, 1)
    weights = check_same_weights(trainer.params)  # every process: raises if their weights diverged
    log.warning(f"ppo: process {trainer.accelerator.process_index} of {trainer.accelerator.num_processes} "
                f"holds weights sha256:{weights[:16]}")
    last = history[-1]
    training = {"iterations": iterations, "seconds": seconds, "final_score": last["score"], "final_kl": last["kl"],
                "final_kl_coef": trainer.kl_ctl.value, "first_score": history[0]["score"],
                "reward_model": recipe.reward.reward_model, "processes": trainer.accelerator.num_processes,
                "rollouts_per_iteration": recipe.ppo.rollout_batch * trainer.accelerator.num_processes,
                "rollout_server": server.rollout_server or None,
                "versions_published": served.published if served is not None else 0}

    def save() -> Path:
        (out / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
        save_file({k: v.detach().cpu().contiguous() for k, v in trainer.value_head.state_dict().items()},
                  str(out / "value_head.safetensors"))
        return save_policy(trainer.policy, METHOD, out, tokenizer, facts, recipe)

    adapter = on_main_then_wait(save)
    del trainer, policy
    return on_main_then_wait(lambda: finish_policy(recipe, "ppo", facts, out, data, training, adapter, scorer)) \
        or {"training": training}
