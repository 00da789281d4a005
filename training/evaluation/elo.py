"""Elo ratings of the base and several adapters, judged pairwise on the same held-out prompts.

    python -m training elo --base B --adapters A1 A2 ... --data held_out.jsonl --judge metric --out elo/
    python -m training elo ... --judge reward --reward-model runs/demo-reward/reward
    python -m training elo ... --server http://127.0.0.1:8000 --judge server --judge-model NAME [--judge-url URL]

Every competitor (the base, and each adapter under its directory's name) answers every prompt
greedily, in-process or on `--server` (as `eval` does: training/evaluation/held_out.py); a judge
(training/evaluation/judges.py) compares every pair of answers per prompt; adapter_formats/ratings.py fits
Bradley-Terry ratings with 95% bootstrap intervals over prompts. Written into --out:
    elo.md    the leaderboard table
    elo.png   ratings with their intervals as error bars
    elo.json  ratings, every answer, and the matches per prompt
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from transformers import AutoTokenizer

from adapter_formats.ratings import ELO_MEAN, Rating, leaderboard
from training.data import DataConfig, Example, prompt_ids
from training.data.dataset import read_valid
from training.evaluation.held_out import generate, load_tuned
from training.evaluation.judges import Judge, metric_judge, reward_judge, server_judge
from training.evaluation.served import Served, served_answers
from training.sections import Metric
from training.templates import PromptTemplate, resolve_template

BASE = "base"
"""The base model's name among the competitors."""


@dataclass
class EloConfig:
    """Elo ratings of the base and adapters from pairwise judgements of their answers to the same prompts."""

    base: str = ""
    """Base model directory (its tokenizer renders the prompts; the base is a competitor too)."""
    adapters: list[str] = field(default_factory=list)
    """Adapter (or full model) directories; each competes under its directory's name, which is also
    its served name with --server."""
    data: str = ""
    """Held-out prompts with reference answers (any training data format)."""
    template: str = "alpaca"
    """Prompt template used in training (alpaca, chat, raw, or a string with one {prompt})."""
    judge: Literal["metric", "reward", "server"] = "metric"
    """Who decides each pair: the task metric against the reference, a reward model, or a judge model on a server."""
    metric: Metric = "exact_match"
    """Task metric of the metric judge."""
    reward_model: str | None = None
    """Reward model directory of the reward judge (RUN/reward from `python -m training reward`)."""
    judge_url: str | None = None
    """Server of the judge model (default: --server)."""
    judge_model: str | None = None
    """Served name of the judge model (the server judge)."""
    limit: int = 50
    """Use at most this many prompts."""
    max_new_tokens: int = 32
    """Generation length."""
    server: str | None = None
    """Generate the answers on this running server (http://host:port) instead of in-process."""
    api_key: str | None = None
    """The servers' API key (default: $OPENAI_API_KEY)."""
    concurrency: int = 8
    """Requests kept in flight on a server."""
    base_model: str | None = None
    """The base's served name (default: the base directory's name, as the server names it)."""
    rounds: int = 1000
    """Bootstrap rounds of the confidence intervals."""
    seed: int = 0
    """Seed of the bootstrap: the same answers and verdicts give the same table."""
    out: str = "elo"
    """Directory for elo.md, elo.png and elo.json."""


def competitors(cfg: EloConfig) -> dict[str, str | None]:
    """Name -> adapter directory (None: the base)."""
    names = [BASE, *(Path(a).name for a in cfg.adapters)]
    repeated = sorted(n for n, c in Counter(names).items() if c > 1)
    if repeated:
        raise ValueError(f"competitors need distinct names (directory names); repeated: {repeated}")
    return dict(zip(names, [None, *cfg.adapters]))


def answers(cfg: EloConfig, examples: list[Example], template: PromptTemplate) -> dict[str, list[str]]:
    """Every competitor's greedy answer to every example, from the same prompt ids."""
    tokenizer = AutoTokenizer.from_pretrained(cfg.base)
    prompts = [prompt_ids(tokenizer, template, e) for e in examples]
    served = Served(cfg.server, cfg.api_key, cfg.concurrency) if cfg.server else None
    result = {}
    for name, path in competitors(cfg).items():
        if served is not None:
            served_name = name if path else cfg.base_model or Path(cfg.base).resolve().name
            result[name] = served_answers(served, served_name, tokenizer, prompts, cfg.max_new_tokens)
        else:
            model = load_tuned(cfg.base, path)
            result[name] = generate(model, tokenizer, prompts, cfg.max_new_tokens)
            del model
    return result


def make_judge(cfg: EloConfig, template: PromptTemplate) -> Judge:
    if cfg.judge == "metric":
        return metric_judge(cfg.metric)
    if cfg.judge == "reward":
        if not cfg.reward_model:
            raise ValueError("--judge reward needs --reward-model (RUN/reward from `python -m training reward`)")
        return reward_judge(cfg.reward_model, template)
    url = cfg.judge_url or cfg.server
    if not (url and cfg.judge_model):
        raise ValueError("--judge server needs --judge-model and a server (--judge-url or --server)")
    return server_judge(Served(url, cfg.api_key, cfg.concurrency), cfg.judge_model)


def markdown_table(ratings: list[Rating], caption: str) -> str:
    lines = [caption, "", "| rank | model | Elo | 95% interval | games | wins | ties | losses |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for rank, r in enumerate(ratings, start=1):
        lines.append(f"| {rank} | {r.model} | {r.rating:.0f} | [{r.low:.0f}, {r.high:.0f}] | {r.games} "
                     f"| {r.wins} | {r.ties} | {r.losses} |")
    return "\n".join(lines)


def plot(ratings: list[Rating], caption: str, path: Path) -> None:
    """Each rating a point with its 95% interval as an error bar, best at the top."""
    # The Agg canvas directly, not pyplot: no global backend switch inside the caller's process.
    fig = Figure(figsize=(7, 1.2 + 0.5 * len(ratings)), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ordered = ratings[::-1]  # y = 0 is the bottom row
    ax.errorbar([r.rating for r in ordered], range(len(ordered)), fmt="o",
                xerr=[[r.rating - r.low for r in ordered], [r.high - r.rating for r in ordered]], capsize=4)
    ax.axvline(ELO_MEAN, color="grey", linewidth=0.8, linestyle=":")
    ax.set_yticks(range(len(ordered)), [r.model for r in ordered])
    ax.set_xlabel("Elo rating (95% bootstrap interval)")
    ax.set_title(caption, fontsize=9)
    fig.savefig(path, dpi=100)


def run_elo(cfg: EloConfig) -> list[Rating]:
    for name in ("base", "data"):
        if not getattr(cfg, name):
            raise ValueError(f"elo needs --{name}")
    if not cfg.adapters:
        raise ValueError("elo needs --adapters (one or more), to rate against the base")
    template = resolve_template(cfg.template)
    DataConfig(template=cfg.template).validate()
    examples = read_valid(cfg.data, "auto", "error", Counter(), cfg.limit)
    judge = make_judge(cfg, template)  # before generating: a bad judge setting fails fast
    texts = answers(cfg, examples, template)
    judgements = judge(examples, texts)
    ratings = leaderboard(judgements, rounds=cfg.rounds, seed=cfg.seed)
    what = f"{cfg.metric} metric" if cfg.judge == "metric" else f"{cfg.judge} judge"
    caption = f"Elo by {what}, {len(examples)} prompts of {Path(cfg.data).name}"
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "elo.md").write_text(markdown_table(ratings, caption) + "\n")
    plot(ratings, caption, out / "elo.png")
    (out / "elo.json").write_text(json.dumps({
        "judge": cfg.judge, "metric": cfg.metric, "prompts": [e.prompt for e in examples],
        "ratings": [asdict(r) for r in ratings], "answers": texts,
        "judgements": [[asdict(m) for m in j] for j in judgements]}, indent=2))
    print(markdown_table(ratings, caption))
    print(f"wrote {out}/elo.md, elo.png, elo.json")
    return ratings
