"""The RLHF demo, end to end: preference data -> starting policy -> reward model -> PPO, DPO, GRPO -> table.

    python -m training rlhf-demo                     # everything under .demo/rlhf (a few minutes on 2 cores)
    python -m training rlhf-demo --methods ppo dpo   # a subset
    python -m training rlhf-demo --rollout-server start   # PPO and GRPO generate on a server it starts
    python -m server --model .demo/rlhf/base --adapters .demo/rlhf/adapters   # then serve the aligned adapters

Steps (each reuses the package's own commands and the recipes in training/recipes/rlhf/):
  1. data     OUT/data: SFT chats, preference pairs/rankings (train) and held-out ones (demo_data.py)
  2. base     OUT/base: the starting policy. With --base it is that model; by default a small Llama
              (the `test` shape) fully fine-tuned with `python -m training full` on the SFT chats, so it
              answers the demo tasks in a mix of styles, mostly curt or rude (no downloads, ~1 min).
  3. reward   reward-demo.yaml -> OUT/runs/reward/reward, held-out pairwise accuracy
  4. policies ppo-demo.yaml, dpo-demo.yaml, grpo-demo.yaml -> LoRA adapters published into OUT/adapters;
              with --rollout-server, PPO and GRPO generate their rollouts on that server
              (training/rlhf/rollout_server.py), publishing each policy version to it
  5. table    every policy vs the base on held-out prompts: mean reward, KL to the base, win rate
              (judged by the reward model), and polite / rude / evasive rates by the labeller's rules
              -> OUT/results.md and OUT/results.json
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from training.recipe import load_recipe, read_yaml
from training.rlhf import demo_data
from training.rlhf.commands import run, sections_of

log = logging.getLogger("training")
RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "rlhf"
METHODS = ("ppo", "dpo", "grpo")


@dataclass
class DemoConfig:
    """Build the demo preference data and starting policy, train reward/PPO/DPO/GRPO, and compare them."""

    out: str = ".demo/rlhf"
    """Demo directory: data/, base/, runs/, adapters/, results.md, results.json."""
    base: str = ""
    """Starting policy; empty: build and fine-tune a small one in OUT/base (cached)."""
    sft_steps: int = 300
    """Fine-tuning steps of the built starting policy."""
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    """Policy optimisers to run: ppo, dpo, grpo."""
    eval_prompts: int = 100
    """Held-out prompts in the final table."""
    seed: int = 0
    """Seed of the data, the starting policy and every run."""
    rollout_server: str = ""
    """PPO and GRPO generate their rollouts on a server: `start` starts one on the base once it is
    built (OUT/rollout-server.log); a URL uses one already serving the base with OUT/runs among
    its --lora-roots. Empty: the trainers generate them."""

    def validate(self) -> None:
        unknown = set(self.methods) - set(METHODS)
        if unknown:
            raise ValueError(f"unknown methods {sorted(unknown)}; choose from {list(METHODS)}")


def build_starting_policy(out: Path, sft_file: Path, steps: int, seed: int) -> Path:
    """A small Llama fully fine-tuned on the SFT chats (mostly impolite answers); cached by a stamp."""
    from training.methods import METHODS as SFT_METHODS
    from training.methods.common import train
    from training.tiny import SPECS, build_base_model

    stamp = {"sft_steps": steps, "seed": seed, "version": 1}
    base = out / "base"
    if (base / "config.json").is_file() and (out / "base.json").is_file() and \
            json.loads((out / "base.json").read_text()) == stamp:
        return base
    spec = dataclasses.replace(SPECS["test"], init_std=0.02, printable_output=False, seed=seed)
    init = build_base_model(out / "init", spec=spec, dtype="float32")
    recipe = load_recipe("full", SFT_METHODS["full"].sections, {
        "model": {"base": str(init)},
        "data": {"train": str(sft_file), "format": "messages", "template": "chat", "loss_on": "all",
                 "validation_fraction": 0.0, "test_fraction": 0.0, "max_length": 64},
        "train": {"output_dir": str(out / "runs" / "sft"), "max_steps": steps, "batch_size": 32,
                  "learning_rate": 3e-3, "warmup": 0.05, "logging_steps": 50, "save_steps": 10_000,
                  "progress": False, "seed": seed},
        "output": {"name": "demo-rlhf-sft", "evaluate": False},
    })
    summary = train(recipe, SFT_METHODS["full"])
    import shutil

    shutil.rmtree(base, ignore_errors=True)
    shutil.copytree(summary["artifact"], base)
    (out / "base.json").write_text(json.dumps(stamp))
    return base


def recipe_for(command: str, out: Path, base: Path, data: dict[str, Path], seed: int, rollout_server: str = ""):
    """The shipped demo recipe with its paths moved under OUT (and rollouts on `rollout_server`)."""
    values = read_yaml(RECIPES / f"{command}-demo.yaml")
    values.pop("command", None)
    values["model"] = {"base": str(base)}
    values["data"].update(train=str(data["train"]), test=str(data["test"]))
    values["train"].update(output_dir=str(out / "runs" / command), seed=seed)
    if "reward" in values:
        values["reward"]["reward_model"] = str(out / "runs" / "reward" / "reward")
    values["output"].update(adapters_dir=str(out / "adapters"), publish=command != "reward", evaluate=False)
    if rollout_server and command in ROLLOUT_COMMANDS:
        values.setdefault("server", {})["rollout_server"] = rollout_server
    return load_recipe(command, sections_of(command), values, source=str(RECIPES / f"{command}-demo.yaml"))


ROLLOUT_COMMANDS = ("ppo", "grpo")  # the methods that generate while they train

JUDGES = {
    "polite": lambda text: float(demo_data.politeness(text) > 0),
    "rude": lambda text: float(demo_data.politeness(text) < 0),
    "evasive": lambda text: float(demo_data.evasive(text)),
}


def run_demo(cfg: DemoConfig) -> dict:
    from training.rlhf.policy_eval import evaluate_policies, markdown_table
    from training.rlhf.preferences import PreferenceSplits, load_preferences
    from training.rlhf.reward import RewardScorer

    started = time.monotonic()
    out = Path(cfg.out)
    data = demo_data.write_demo_preferences(out / "data", seed=cfg.seed)
    timings: dict[str, float] = {}
    base = Path(cfg.base) if cfg.base else build_starting_policy(out, data["sft"], cfg.sft_steps, cfg.seed)
    timings["base"] = round(time.monotonic() - started, 1)

    summaries = {}
    with contextlib.ExitStack() as stack:
        server = cfg.rollout_server
        if server == "start" and set(cfg.methods) & set(ROLLOUT_COMMANDS):
            from training.rlhf.rollout_server import started_server

            server = stack.enter_context(started_server(base, out / "rollout-adapters", out / "runs",
                                                        out / "rollout-server.log", "--dtype", "float32"))
        for command in ("reward", *cfg.methods):
            t0 = time.monotonic()
            summaries[command] = run(command, recipe_for(command, out, base, data, cfg.seed, server))
            timings[command] = round(time.monotonic() - t0, 1)
            log.warning(f"rlhf-demo: {command} done in {timings[command]} s")

    t0 = time.monotonic()
    recipe = recipe_for("reward", out, base, data, cfg.seed)
    from transformers import AutoTokenizer

    splits = load_preferences(recipe.data, AutoTokenizer.from_pretrained(base), seed=cfg.seed)
    prompts = PreferenceSplits.prompts(splits.test)[: cfg.eval_prompts]
    scorer = RewardScorer(summaries["reward"]["artifact"])
    adapters = {m: summaries[m]["artifact"] for m in cfg.methods}
    max_new = recipe_for(cfg.methods[0], out, base, data, cfg.seed).output.max_new_tokens if cfg.methods else 20
    table = evaluate_policies(base, adapters, prompts, scorer, max_new, judges=JUDGES, seed=cfg.seed)
    timings["evaluation"] = round(time.monotonic() - t0, 1)
    timings["total"] = round(time.monotonic() - started, 1)

    accuracy = summaries["reward"]["training"]["heldout_pairwise_accuracy"]
    md = "\n".join([
        f"Reward model: held-out pairwise accuracy {accuracy:.3f} on "
        f"{summaries['reward']['training']['heldout_pairs']} pairs (chance 0.5).",
        "",
        f"Policies on {len(prompts)} held-out prompts (greedy unless noted; KL = E_π[log π/π_base] per response, "
        "on samples; win rate judged by the reward model; polite / rude / evasive = share of greedy answers "
        "so judged by the labeller's rules, not the reward model):",
        "",
        markdown_table(table),
        "",
        "Published: " + ", ".join(f"{m} -> {summaries[m].get('published')}" for m in cfg.methods),
        "Rollouts of " + ", ".join(m for m in cfg.methods if m in ROLLOUT_COMMANDS) + ": "
        + ("on the rollout server" if cfg.rollout_server else "in the trainers"),
        f"Timings (s): {timings}",
    ])
    result = {"reward_model": summaries["reward"]["training"], "evaluation": table,
              "training": {m: summaries[m]["training"] for m in cfg.methods},
              "published": {m: summaries[m].get("published") for m in cfg.methods}, "timings": timings,
              "rollouts": "server" if cfg.rollout_server else "trainer",
              "base": str(base)}
    (out / "results.json").write_text(json.dumps(result, indent=2, default=str))
    (out / "results.md").write_text(md + "\n")
    print(md)
    return result
