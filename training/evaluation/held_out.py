"""Base versus tuned on held-out data: task metric, perplexity, and forgetting on a second task set.

    python -m training eval --base .demo/base --adapter adapters/demo-firstletters-lora \
        --data held_out.jsonl --forgetting other_tasks.jsonl --template chat --out eval.json \
        [--shots 0,1,3 --shots-from train.jsonl] [--server http://127.0.0.1:8000]

The tuned side is a PEFT adapter directory (LoRA or soft prompt) or a full model directory.
Generation is greedy, batched by prompt length (no padding); the prompt is tokenized exactly as
in training (`training.data.prompt_ids`), so the numbers describe what the server will answer.

`--shots` adds the in-context-learning baseline: the base with k solved training examples in
its prompt, rows `base (k-shot)` (training/evaluation/shots.py). `--server` sends the same prompt
ids to a running server instead of generating here (training/evaluation/served.py); perplexity
is then not measured.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from training.data import DataConfig, Example, encode, prompt_ids
from training.data.dataset import read_valid
from training.data.encode import IGNORE, Encoded
from training.devices import device
from training.evaluation.served import Served, served_answers
from training.evaluation.shots import FewShot, few_shot_prompts, parse_counts, shot_pool
from training.sections import Metric
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
def generate(model, tokenizer, prompts: list[list[int]], max_new_tokens: int, batch_size: int = 32) -> list[str]:
    """Greedy answers to prompts given as token ids (`prompt_ids`; the same ids `--server` sends).

    Batches hold prompts of one length, so nothing is padded: PEFT's prompt tuning ignores
    position ids, and behind left padding a soft prompt's rows would sit at other positions than
    the server puts them (7 points of exact match lost on the demo's soft prompt).
    """
    by_length: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        by_length.setdefault(len(p), []).append(i)
    outputs: list[str] = [""] * len(prompts)
    for indices in by_length.values():
        for start in range(0, len(indices), batch_size):
            batch = indices[start:start + batch_size]
            ids = torch.tensor([prompts[i] for i in batch], device=model.device)  # [B, T], no padding
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                 max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id)
            for i, row in zip(batch, out[:, ids.shape[1]:]):
                outputs[i] = tokenizer.decode(row, skip_special_tokens=True)
    return outputs


def with_prompt(encoded: Encoded, prompt: list[int]) -> Encoded:
    """The same response (and labels) after another prompt, e.g. a few-shot one."""
    n = encoded.labels.count(IGNORE)  # the template's prompt: the only ignored labels
    return Encoded(prompt + encoded.input_ids[n:], [IGNORE] * len(prompt) + encoded.labels[n:], False)


@torch.no_grad()
def perplexity(model, tokenizer, template: PromptTemplate, examples: list[Example], batch_size: int = 32,
               prompts: list[list[int]] | None = None) -> float:
    """exp(mean negative log-likelihood of the response tokens, eos included); `prompts` (ids)
    replace the template's prompts (the response is scored after a few-shot prompt)."""
    nll, count = 0.0, 0
    encoded = [encode(tokenizer, template, e, max_length=10**9) for e in examples]
    if prompts is not None:
        encoded = [with_prompt(e, p) for e, p in zip(encoded, prompts, strict=True)]
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


def score(model, tokenizer, template, examples, metrics: tuple[str, ...], max_new_tokens: int,
          prompts: list[list[int]] | None = None, answer=None) -> dict:
    """Metric means over `examples`, answered from `prompts` (ids; default: the template's) by
    `model`, or by `answer(prompts) -> texts` (a server: `model` None, perplexity then None)."""
    prompts = prompts if prompts is not None else [prompt_ids(tokenizer, template, e) for e in examples]
    predictions = answer(prompts) if answer else generate(model, tokenizer, prompts, max_new_tokens)
    means = {}
    for metric in metrics:
        values = [METRICS[metric](p, e.response or "") for p, e in zip(predictions, examples)]
        means[metric] = round(sum(values) / max(len(values), 1), 4)
    return {**means,
            "perplexity": None if model is None else round(
                perplexity(model, tokenizer, template, examples, prompts=prompts), 4),
            "examples": len(examples),
            "samples": [{"prompt": e.prompt, "expected": e.response, "got": p}
                        for e, p in list(zip(examples, predictions))[:3]],
            "predictions": predictions}


def compare(base: str | Path, tuned: str | Path, examples: list[Example], template: PromptTemplate,
            metric: str = "exact_match", max_new_tokens: int = 32,
            forgetting: list[Example] | None = None, task_metrics: tuple[str, ...] = (),
            few_shot: FewShot | None = None, served: Served | None = None,
            served_names: tuple[str, str] | None = None) -> dict:
    """{"task": {"base": {...}, "tuned": {...}}, "forgetting": {...}} for the held-out and second sets.

    `task_metrics` are scored on the held-out set only: they may not suit the second set's tasks
    (json_match scores every non-JSON answer 0). `few_shot` adds held-out rows `base (k-shot)`
    (between base and tuned). `served`: generate on that server instead, where the base and the
    tuned side are called `served_names` (default: their directories' names).
    """
    tokenizer = AutoTokenizer.from_pretrained(base)
    sets = {"task": (examples, (metric, *task_metrics)),
            **({"forgetting": (forgetting, (metric,))} if forgetting else {})}
    names = served_names or (Path(base).resolve().name, Path(tuned).name)
    result: dict = {name: {} for name in sets}
    for side, path, served_name in (("base", None, names[0]), ("tuned", tuned, names[1])):
        model = load_tuned(base, path) if served is None else None
        answer = None if served is None else partial(served_answers, served, served_name, tokenizer,
                                                     max_new_tokens=max_new_tokens)
        for name, (items, metrics) in sets.items():
            result[name][side] = score(model, tokenizer, template, items, metrics, max_new_tokens, answer=answer)
        if side == "base" and few_shot is not None:
            for k, (prompts, used) in few_shot_prompts(tokenizer, template, examples, few_shot).items():
                row = score(model, tokenizer, template, examples, (metric, *task_metrics), max_new_tokens,
                            prompts=prompts, answer=answer)
                result["task"][f"base ({k}-shot)"] = {**row, "shots": k, "shots_used": round(used, 4),
                                                      "shot_budget": few_shot.budget}
        del model
    result["metric"] = metric
    result["task_metrics"] = list(task_metrics)
    if served is not None:
        result["server"] = {"url": served.url, "base_model": names[0], "model": names[1]}
    return result


def table(result: dict) -> str:
    metrics = [result["metric"], *result.get("task_metrics", ())]
    lines = [f"| set | model | {' | '.join(metrics)} | perplexity | examples |",
             "| --- | --- | " + "--- | " * len(metrics) + "--- | --- |"]
    notes = []
    for name in ("task", "forgetting"):
        for side, r in result.get(name, {}).items():
            cells = " | ".join(f"{r[m]:.3f}" if m in r else "-" for m in metrics)
            ppl = "-" if r.get("perplexity") is None else f"{r['perplexity']:.3f}"
            lines.append(f"| {name} | {side} | {cells} | {ppl} | {r['examples']} |")
            if "shots" in r:
                notes.append(f"{side}: {r['shots_used']:.2f} shots used on average "
                             f"(prompts of at most {r['shot_budget']} tokens)")
    if "server" in result:
        notes.append(f"generated by {result['server']['url']}; perplexity is not available through "
                     "the server (no prompt log-probabilities)")
    return "\n".join(lines + ([""] + notes if notes else []))


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
    shots: str = ""
    """Also score the base with k-shot prompts, for each k of this comma-separated list (e.g. 0,1,3):
    the in-context-learning baseline the adapter has to beat."""
    shots_from: str | None = None
    """Training data to draw the shots from (any training data format; never the evaluated prompt)."""
    shot_budget: int = 1024
    """Most tokens a few-shot prompt may have (shots included); shots that do not fit are dropped."""
    seed: int = 0
    """Seed of the shot draws: the same seed shows the same shots."""
    server: str | None = None
    """Generate on this running server (http://host:port) instead of in-process; perplexity is then left out."""
    api_key: str | None = None
    """The server's API key (default: $OPENAI_API_KEY)."""
    concurrency: int = 8
    """Requests kept in flight on the server."""
    model: str | None = None
    """The adapter's served name (default: the adapter directory's name)."""
    base_model: str | None = None
    """The base's served name (default: the base directory's name, as the server names it)."""


def run_eval(cfg: EvalConfig) -> dict:
    for name in ("base", "adapter", "data"):
        if not getattr(cfg, name) and not (name == "adapter" and cfg.server and cfg.model):
            raise ValueError(f"eval needs --{name}")
    template = resolve_template(cfg.template)
    DataConfig(template=cfg.template).validate()
    examples = read_valid(cfg.data, "auto", "error", Counter(), cfg.limit)
    other = read_valid(cfg.forgetting, "auto", "error", Counter(), cfg.limit) if cfg.forgetting else None
    few_shot = None
    if cfg.shots:
        counts = parse_counts(cfg.shots)
        if any(counts) and not cfg.shots_from:
            raise ValueError("--shots above 0 needs --shots-from (training data to draw the shots from)")
        pool = shot_pool(read_valid(cfg.shots_from, "auto", "error", Counter())) if cfg.shots_from else []
        few_shot = FewShot(counts, pool, cfg.shot_budget, cfg.seed)
    served, names = None, None
    if cfg.server:
        served = Served(cfg.server, cfg.api_key, cfg.concurrency)
        names = (cfg.base_model or Path(cfg.base).resolve().name, cfg.model or Path(cfg.adapter).name)
    result = compare(cfg.base, cfg.adapter, examples, template, cfg.metric, cfg.max_new_tokens, other,
                     few_shot=few_shot, served=served, served_names=names)
    Path(cfg.out).write_text(json.dumps(result, indent=2))
    print(table(result))
    print(f"wrote {cfg.out}")
    return result
