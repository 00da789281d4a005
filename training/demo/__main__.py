"""Build the demo once (cached): a base model pretrained here, adapters and classifiers trained from it.

    python -m training.demo build --out .demo --adapters adapters [--minutes-scale 1.0]

Steps (each a recipe in training/recipes/, run through the normal training pipeline):
  1. synthetic data (training/demo/tasks.py) -> OUT/data: chat tasks, 3-class review sentiment
     ({"text", "label"}), paraphrase pairs
  2. random-init 2.9M Llama (training.tiny) -> full training on four tasks -> OUT/base
  3. LoRA for a new task (first letters)          -> ADAPTERS/demo-firstletters-lora
  4. soft prompt standing in for an instruction   -> ADAPTERS/demo-reverse-softprompt
     (bare words in, their reversal out)
  5. QLoRA (4-bit NF4 base) for a new task         -> ADAPTERS/demo-qlora
  6. LoRA for review fields as JSON                -> ADAPTERS/demo-extract-lora
     after each of 3-6: base vs adapter on its held-out set (+ forgetting on the base tasks; the
     base with 0/1/3-shot prompts for 3 and 6) -> manifests
  7. review sentiment classifiers: head (FT I), full (FT II), LoRA (merged), and frozen features
     + logistic regression (training/demo/classifiers.py)  -> OUT/runs/classifier-* (not published)
  8. contrastive embedding LoRA on paraphrases (training/demo/embedding.py)
                                                    -> OUT/pooling-adapters/demo-paraphrase-embed
  9. Elo of the base and the adapters of 3-6 on a mixed held-out set, judged by exact match
     (training/demo/ratings.py)                     -> OUT/elo/elo.md, elo.png
 10. OUT/report.md (training/demo/report.py) and OUT/demo.json

Each training step has a time budget (`max_minutes`; `--minutes-scale` multiplies them all), so
the build takes ~15 minutes on 2 cores even when they are shared; the steps reached are in the
report. A stamp file (OUT/demo.json) with DEMO_VERSION makes the next run instant.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from training.data.dataset import read_valid
from training.demo.classifiers import train_classifiers
from training.demo.embedding import MINUTES as EMBEDDING_MINUTES, NAME as EMBEDDING, pooling_adapters, train_embedding
from training.demo.ratings import rate
from training.demo.recipes import RECIPES, recipe_for  # noqa: F401 (RECIPES: tests read it here)
from training.demo.report import write_report
from training.demo.tasks import write_demo_data
from training.evaluation.held_out import compare
from training.evaluation.shots import FewShot, shot_pool
from training.methods import METHODS
from training.methods.common import train
from training.publish import publish_run
from training.templates import resolve_template
from training.tiny import SPECS, build_base_model

# Bump when the demo's recipe changes, so cached builds are redone.
DEMO_VERSION = "4-classifiers-embed-elo"
# A pretrainable 2.9M-param Llama: small init (not the random-demo 0.1) and normal output rows.
SPEC = replace(SPECS["demo"], num_hidden_layers=4, intermediate_size=512, init_std=0.02, printable_output=False)


@dataclass(frozen=True)
class DemoAdapter:
    """One demo adapter: its training command, shipped recipe, time budget and evaluation."""

    command: str
    recipe: str
    minutes: float
    forgetting: bool
    """Also score the base tasks through the adapter: how much of them it forgot."""
    max_new_tokens: int = 16
    """Evaluation's generation length: above the longest answer, so a missing eos costs the match."""
    task_metrics: tuple[str, ...] = ()
    """Metrics beside exact match, on the adapter's own held-out set."""
    shots: bool = False
    """Also score the base with k-shot prompts (SHOTS) drawn from the adapter's training file."""


ADAPTERS = {
    "demo-firstletters-lora": DemoAdapter("lora", "demo-firstletters-lora.yaml", 1.5, True, shots=True),
    "demo-reverse-softprompt": DemoAdapter("prompt_tuning", "demo-reverse-softprompt.yaml", 1.0, False),
    "demo-qlora": DemoAdapter("qlora", "demo-qlora.yaml", 1.5, True),
    # Answers are JSON of up to 38 tokens (EXTRACT_SCHEMA), for response_format json_schema.
    "demo-extract-lora": DemoAdapter("lora", "demo-extract-lora.yaml", 1.5, True, 48, ("json_match",), shots=True),
}
# Adapter names earlier demo versions published; a rebuild removes them from ADAPTERS (only when
# their manifest says this demo's base trained them).
RETIRED = ("demo-polite-softprompt",)
PRETRAIN_MINUTES = 4.0
# The in-context-learning baseline: the base shown 0, 1 and 3 solved training examples, in
# prompts of at most SHOT_BUDGET tokens (a 3-shot extraction prompt is ~250).
SHOTS = (0, 1, 3)
SHOT_BUDGET = 512
SENTIMENT_TEST = 300

log = logging.getLogger("training")


def evaluate_run(run: dict, base: Path, test_file: str, base_test_file: str, adapter: DemoAdapter,
                 train_file: str | None = None, limit: int = 200) -> dict:
    """compare(): base vs tuned on the held-out set (+ forgetting), and with `adapter.shots` the
    base (k-shot) rows, their shots drawn from `train_file`."""
    template = resolve_template("chat")
    examples = read_valid(test_file, "messages", "error", Counter(), limit)
    other = read_valid(base_test_file, "messages", "error", Counter(), limit // 2) if adapter.forgetting else None
    few_shot = None
    if adapter.shots and train_file:
        few_shot = FewShot(SHOTS, shot_pool(read_valid(train_file, "messages", "error", Counter())), SHOT_BUDGET)
    return compare(base, run["artifact"], examples, template, "exact_match", adapter.max_new_tokens, other,
                   adapter.task_metrics, few_shot=few_shot)


def up_to_date(out: Path, adapters: Path, minutes_scale: float = 1.0) -> bool:
    stamp = out / "demo.json"
    built = json.loads(stamp.read_text()) if stamp.exists() else {}
    return (built.get("version") == DEMO_VERSION and built.get("minutes_scale", 1.0) == minutes_scale
            and (out / "base" / "config.json").exists()
            and all((adapters / name / "manifest.json").exists() for name in ADAPTERS)
            and (pooling_adapters(out) / EMBEDDING / "manifest.json").exists())


def remove_retired(out: Path, adapters: Path) -> None:
    """Delete adapters an earlier demo version published under a name it no longer uses."""
    for name in RETIRED:
        manifest = adapters / name / "manifest.json"
        try:
            path = json.loads(manifest.read_text()).get("base_model", {}).get("path")
        except (OSError, ValueError):
            continue
        if path and Path(path) == (out / "base").resolve():
            shutil.rmtree(adapters / name, ignore_errors=True)
            print(f"[demo] removed {adapters / name} (renamed in demo {DEMO_VERSION})")


def build(out: Path, adapters: Path, minutes_scale: float = 1.0) -> None:
    """The whole demo into `out` and `adapters`; `minutes_scale` multiplies every time budget (a
    smoke build: 0.05 gives each step a few seconds, and numbers that mean nothing)."""
    if up_to_date(out, adapters, minutes_scale):
        print(f"demo is up to date in {out} and {adapters} (see {out / 'report.md'})")
        return
    started = time.monotonic()
    shutil.rmtree(out, ignore_errors=True)
    remove_retired(out, adapters)
    data = write_demo_data(out / "data")
    build_base_model(out / "init", spec=SPEC, dtype="float32")

    minutes = PRETRAIN_MINUTES * minutes_scale
    print(f"[demo] pretraining the base model ({minutes:g} min budget)")
    pre = train(recipe_for("full", "demo-pretrain.yaml", out, adapters, minutes), METHODS["full"])
    shutil.copytree(pre["artifact"], out / "base")
    base = out / "base"

    report = {"version": DEMO_VERSION, "minutes_scale": minutes_scale,
              "base": {"steps": pre["training"]["steps"], "seconds": pre["training"]["seconds"]}, "adapters": {},
              "step_seconds": {"data + pretraining": round(time.monotonic() - started, 1)}}
    test_files = {}
    for name, adapter in ADAPTERS.items():
        step_started = time.monotonic()
        command, minutes = adapter.command, adapter.minutes * minutes_scale
        print(f"[demo] training {name} ({command}, {minutes:g} min budget)")
        recipe = recipe_for(command, adapter.recipe, out, adapters, minutes)
        run = train(recipe, METHODS[command])
        run["evaluation"] = evaluate_run(run, base, recipe.data.test, str(data["base-test"]), adapter,
                                         recipe.data.train)
        run_dir = Path(recipe.train.output_dir)
        (run_dir / "run.json").write_text(json.dumps(run, indent=2, default=str))
        publish_run(run_dir, name, adapters)
        test_files[name] = recipe.data.test
        report["adapters"][name] = {"method": command, "steps": run["training"]["steps"],
                                    "seconds": run["training"]["seconds"], "evaluation": run["evaluation"]}
        report["step_seconds"][name] = round(time.monotonic() - step_started, 1)

    def step(key: str, fn, *args):
        step_started = time.monotonic()
        report[key] = fn(*args)
        report["step_seconds"][key] = round(time.monotonic() - step_started, 1)

    step("classifiers", train_classifiers, out, base, SENTIMENT_TEST, minutes_scale)
    step("embedding", train_embedding, out, EMBEDDING_MINUTES * minutes_scale)
    step("elo", rate, out, base, [adapters / name for name in ADAPTERS], test_files,
         max(a.max_new_tokens for a in ADAPTERS.values()))
    report["build_seconds"] = round(time.monotonic() - started, 1)
    write_report(out, report)
    (out / "demo.json").write_text(json.dumps(report, indent=2))
    print((out / "report.md").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m training.demo")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the demo model and adapters (cached)")
    b.add_argument("--out", type=Path, default=Path(".demo"), help="where the base model goes")
    b.add_argument("--adapters", type=Path, default=Path("adapters"), help="adapters directory")
    b.add_argument("--minutes-scale", type=float, default=1.0,
                   help="multiply every time budget (e.g. 0.05: a smoke build of the whole pipeline in minutes)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars; the training bars stay
    build(args.out, args.adapters, args.minutes_scale)


if __name__ == "__main__":
    main()
