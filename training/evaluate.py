"""Base versus tuned on held-out data: task metric, perplexity, and forgetting on a second task set.

    python -m training eval --base .demo/base --adapter adapters/demo-firstletters-lora \
        --data held_out.jsonl --forgetting other_tasks.jsonl --template chat --out eval.json

The tuned side is a PEFT adapter directory (LoRA or soft prompt) or a full model directory.
Generation is greedy, batched with left padding; the prompt is tokenized exactly as in training
(`training.data.prompt_ids`), so the numbers describe what the server will answer.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from training.data import DataConfig, Example, encode, prompt_ids
from training.data.dataset import read_valid
from training.devices import device
from training.options import Metric
from training.templates import PromptTemplate, resolve_template


def normalize(text: str) -> str:
    return " ".join(text.strip().split())


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 over whitespace tokens (longest common subsequence)."""
    p, r = prediction.split(), reference.split()
    if not p or not r:
        return float(p == r)
    prev = [0] * (len(r) + 1)
    for x in p:
        cur = [0]
        for j, y in enumerate(r):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(p), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


def json_match(prediction: str, reference: str) -> float:
    """1.0 when both parse as JSON to equal values: key order and whitespace do not matter."""
    try:
        return float(json.loads(prediction) == json.loads(reference))
    except ValueError:  # not JSON (json.JSONDecodeError is a ValueError)
        return 0.0


METRICS = {
    "exact_match": lambda p, r: float(normalize(p) == normalize(r)),
    # Labels compared case-insensitively (classification answers like "positive"/"Positive").
    "accuracy": lambda p, r: float(normalize(p).lower() == normalize(r).lower()),
    "rouge_l": lambda p, r: rouge_l(normalize(p), normalize(r)),
    "json_match": json_match,
}


def load_tuned(base: str | Path, tuned: str | Path | None):
    """The base model, with a PEFT adapter applied or replaced by a full model directory (float32,
    so base and tuned are compared at full precision), on this process's device."""
    tuned = Path(tuned) if tuned else None
    if tuned is not None and not (tuned / "adapter_config.json").exists():
        return AutoModelForCausalLM.from_pretrained(tuned, dtype=torch.float32).to(device()).eval()
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).to(device())
    if tuned is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(tuned))
    return model.eval()


@torch.no_grad()
def generate(model, tokenizer, template: PromptTemplate, examples: list[Example], max_new_tokens: int,
             batch_size: int = 32) -> list[str]:
    outputs = []
    pad = tokenizer.pad_token_id
    for i in range(0, len(examples), batch_size):
        prompts = [prompt_ids(tokenizer, template, e) for e in examples[i:i + batch_size]]
        width = max(map(len, prompts))
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])  # left padding: [B, T]
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        out = model.generate(input_ids=ids.to(model.device), attention_mask=mask.to(model.device), do_sample=False,
                             max_new_tokens=max_new_tokens, pad_token_id=pad, eos_token_id=tokenizer.eos_token_id)
        for row in out[:, width:]:
            outputs.append(tokenizer.decode(row, skip_special_tokens=True))
    return outputs


@torch.no_grad()
def perplexity(model, tokenizer, template: PromptTemplate, examples: list[Example], batch_size: int = 32) -> float:
    """exp(mean negative log-likelihood of the response tokens, eos included)."""
    nll, count = 0.0, 0
    encoded = [encode(tokenizer, template, e, max_length=10**9) for e in examples]
    for i in range(0, len(encoded), batch_size):
        batch = encoded[i:i + batch_size]
        width = max(len(e.input_ids) for e in batch)
        ids = torch.tensor([e.input_ids + [tokenizer.pad_token_id] * (width - len(e.input_ids)) for e in batch])
        labels = torch.tensor([e.labels + [-100] * (width - len(e.labels)) for e in batch])
        mask = (torch.arange(width)[None] < torch.tensor([len(e.input_ids) for e in batch])[:, None]).long()
        logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits
        logits = logits[:, -width:].float()  # soft prompts prepend rows
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:].to(logits.device),
                                                 reduction="sum")
        nll += loss.item()
        count += int((labels[:, 1:] != -100).sum())
    return math.exp(nll / max(count, 1))


def score(model, tokenizer, template, examples, metrics: tuple[str, ...], max_new_tokens: int) -> dict:
    predictions = generate(model, tokenizer, template, examples, max_new_tokens)
    means = {}
    for metric in metrics:
        values = [METRICS[metric](p, e.response or "") for p, e in zip(predictions, examples)]
        means[metric] = round(sum(values) / max(len(values), 1), 4)
    return {**means,
            "perplexity": round(perplexity(model, tokenizer, template, examples), 4),
            "examples": len(examples),
            "samples": [{"prompt": e.prompt, "expected": e.response, "got": p}
                        for e, p in list(zip(examples, predictions))[:3]]}


def compare(base: str | Path, tuned: str | Path, examples: list[Example], template: PromptTemplate,
            metric: str = "exact_match", max_new_tokens: int = 32,
            forgetting: list[Example] | None = None, task_metrics: tuple[str, ...] = ()) -> dict:
    """{"task": {"base": {...}, "tuned": {...}}, "forgetting": {...}} for the held-out and second sets.

    `task_metrics` are scored on the held-out set only: they may not suit the second set's tasks
    (json_match scores every non-JSON answer 0).
    """
    tokenizer = AutoTokenizer.from_pretrained(base)
    sets = {"task": (examples, (metric, *task_metrics)),
            **({"forgetting": (forgetting, (metric,))} if forgetting else {})}
    result: dict = {name: {} for name in sets}
    for side, path in (("base", None), ("tuned", tuned)):
        model = load_tuned(base, path)
        for name, (items, metrics) in sets.items():
            result[name][side] = score(model, tokenizer, template, items, metrics, max_new_tokens)
        del model
    result["metric"] = metric
    result["task_metrics"] = list(task_metrics)
    return result


def table(result: dict) -> str:
    metrics = [result["metric"], *result.get("task_metrics", ())]
    lines = [f"| set | model | {' | '.join(metrics)} | perplexity | examples |",
             "| --- | --- | " + "--- | " * len(metrics) + "--- | --- |"]
    for name in ("task", "forgetting"):
        for side in ("base", "tuned"):
            if name in result:
                r = result[name][side]
                cells = " | ".join(f"{r[m]:.3f}" if m in r else "-" for m in metrics)
                lines.append(f"| {name} | {side} | {cells} | {r['perplexity']:.3f} | {r['examples']} |")
    return "\n".join(lines)


@dataclass
class EvalConfig:
    """Compare the base model with a tuned adapter/model on held-out data."""

    base: str = ""
    """Base model directory."""
    adapter: str = ""
    """Tuned side: a PEFT adapter directory (LoRA / soft prompt) or a full model directory."""
    data: str = ""
    """Held-out set of the tuned task (any training data format)."""
    forgetting: str | None = None
    """A second task set, to check that the adapter did not make the base worse at other tasks."""
    template: str = "alpaca"
    """Prompt template used in training (alpaca, chat, raw, or a string with one {prompt})."""
    metric: Metric = "exact_match"
    """Task metric (json_match: answers compared as parsed JSON)."""
    limit: int = 200
    """Use at most this many examples of each set."""
    max_new_tokens: int = 32
    """Generation length."""
    out: str = "eval.json"
    """Where the JSON results go."""


def run_eval(cfg: EvalConfig) -> dict:
    for name in ("base", "adapter", "data"):
        if not getattr(cfg, name):
            raise ValueError(f"eval needs --{name}")
    template = resolve_template(cfg.template)
    DataConfig(template=cfg.template).validate()
    examples = read_valid(cfg.data, "auto", "error", Counter(), cfg.limit)
    other = read_valid(cfg.forgetting, "auto", "error", Counter(), cfg.limit) if cfg.forgetting else None
    result = compare(cfg.base, cfg.adapter, examples, template, cfg.metric, cfg.max_new_tokens, other)
    Path(cfg.out).write_text(json.dumps(result, indent=2))
    print(table(result))
    print(f"wrote {cfg.out}")
    return result
