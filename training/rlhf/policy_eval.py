"""Aligned adapters vs the base on held-out prompts: reward, KL to the reference, win rate.

For the base and each adapter, on the same held-out prompts:
    reward        mean reward-model score of greedy responses (what temperature 0 serving returns)
    reward_sampled mean score of responses sampled at temperature 1 (what the RL objective sees)
    kl            KL(π || π_ref) per response, estimated on the sampled responses as the mean of
                  Σ_t log π(y_t) - log π_ref(y_t) (k1; π_ref = base = adapter disabled)
    win_rate      P(r(adapter's greedy response) > r(base's)), ties (same text) count ½
    judges        optional ground-truth metrics by name, e.g. the demo's polite rate: the mean of
                  judge(text) over greedy responses, independent of the learned reward model
                  (a rising reward with a flat or worsening judge is reward hacking)

    from training.rlhf.policy_eval import evaluate_policies, markdown_table
    result = evaluate_policies(base, {"ppo": "runs/ppo/adapter"}, prompts, scorer, max_new_tokens=24)
    print(markdown_table(result))
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from training.devices import device
from training.rlhf.rollout import forward, generate, pack


def evaluate_policies(base: str | Path, adapters: dict[str, str | Path], prompts: list[str], scorer,
                      max_new_tokens: int = 32, judges: dict[str, Callable[[str], float]] | None = None,
                      seed: int = 0) -> dict:
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).to(device())
    names = list(adapters)
    for i, name in enumerate(names):
        if i == 0:
            model = PeftModel.from_pretrained(model, str(adapters[name]), adapter_name=name)
        else:
            model.load_adapter(str(adapters[name]), adapter_name=name)
    model.eval()
    ids = [tok(p).input_ids for p in prompts]
    pad, eos = tok.pad_token_id, tok.eos_token_id

    def run(name: str) -> dict:
        torch.manual_seed(seed)
        greedy = generate(model, ids, pad, eos, max_new_tokens, sample=False)
        sampled = generate(model, ids, pad, eos, max_new_tokens, sample=True)
        batch = pack(ids, sampled, pad).to(model.device)
        with torch.no_grad():
            logp, _, _ = forward(model, batch)
            if name == "base":
                ref = logp
            else:
                with model.disable_adapter():
                    ref, _, _ = forward(model, batch)
        kl = ((logp - ref) * batch.response_mask).sum(-1)
        greedy_text = tok.batch_decode(greedy, skip_special_tokens=True)
        sampled_text = tok.batch_decode(sampled, skip_special_tokens=True)
        scores = scorer.score(prompts, greedy_text)
        row = {"reward": scores.mean().item(), "reward_sampled": scorer.score(prompts, sampled_text).mean().item(),
               "kl": kl.mean().item(), "response_tokens": sum(map(len, greedy)) / len(greedy),
               "scores": scores, "texts": greedy_text}
        for judge_name, judge in (judges or {}).items():
            row[judge_name] = sum(judge(t) for t in greedy_text) / len(greedy_text)
        return row

    if isinstance(model, PeftModel):
        with model.disable_adapter():
            results = {"base": run("base")}
    else:
        results = {"base": run("base")}
    for name in names:
        model.set_adapter(name)
        results[name] = run(name)
    base_scores, base_texts = results["base"]["scores"], results["base"]["texts"]
    for name, row in results.items():
        same = torch.tensor([a == b for a, b in zip(row["texts"], base_texts)])
        wins = (row["scores"] > base_scores) & ~same
        row["win_rate"] = (wins.float() + 0.5 * same.float()).mean().item()
    out = {"prompts": len(prompts), "max_new_tokens": max_new_tokens, "policies": {}}
    for name, row in results.items():
        samples = [{"prompt": p, "response": t} for p, t in zip(prompts[:5], row["texts"][:5])]
        out["policies"][name] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()
                                 if k not in ("scores", "texts")} | {"samples": samples}
    return out


COLUMNS = ("reward", "reward_sampled", "kl", "win_rate", "response_tokens", "samples")


def markdown_table(result: dict) -> str:
    policies = result["policies"]
    judges = [k for k in next(iter(policies.values())) if k not in COLUMNS]
    head = ["policy", "mean reward (greedy)", "mean reward (sampled)", "KL to base (nats/response)",
            "win rate vs base"] + judges
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in policies.items():
        cells = [name, f"{r['reward']:.3f}", f"{r['reward_sampled']:.3f}", f"{r['kl']:.3f}", f"{r['win_rate']:.2f}"]
        cells += [f"{r[j]:.2f}" for j in judges]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
