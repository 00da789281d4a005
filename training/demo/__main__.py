"""Build the demo once (cached): a base model pretrained here, and four adapters trained from it.

    python -m training.demo build --out .demo --adapters adapters

Steps (each a recipe in training/recipes/demo-*.yaml, run through the normal training pipeline):
  1. synthetic chat data (training/demo/tasks.py) -> OUT/data
  2. random-init 2.9M Llama (training.tiny) -> full training on four tasks -> OUT/base
  3. LoRA for a new task (first letters)          -> ADAPTERS/demo-firstletters-lora
  4. soft prompt for a behaviour ("Sure! ...")     -> ADAPTERS/demo-polite-softprompt
  5. QLoRA (4-bit NF4 base) for a new task         -> ADAPTERS/demo-qlora
  6. LoRA for review fields as JSON                -> ADAPTERS/demo-extract-lora
  7. base vs adapter on held-out sets (+ forgetting on the base tasks) -> manifests, OUT/report.md

Each training step has a time budget (`max_minutes`), so the build takes ~12 minutes on 2 cores
even when they are shared; the steps reached are in the report. A stamp file (OUT/demo.json)
with DEMO_VERSION makes the next run instant.
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

from training.config import load_recipe, read_yaml
from training.data.dataset import read_valid
from training.demo.tasks import write_demo_data
from training.devices import native_bf16
from training.evaluate import compare, table
from training.methods import METHODS
from training.methods.common import train
from training.publish import publish_run
from training.templates import resolve_template
from training.tiny import SPECS, build_base_model

# Bump when the demo's recipe changes, so cached builds are redone.
DEMO_VERSION = "3-extract"
RECIPES = Path(__file__).resolve().parent.parent / "recipes"
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


ADAPTERS = {
    "demo-firstletters-lora": DemoAdapter("lora", "demo-firstletters-lora.yaml", 1.5, True),
    "demo-polite-softprompt": DemoAdapter("prompt_tuning", "demo-polite-softprompt.yaml", 1.0, False),
    "demo-qlora": DemoAdapter("qlora", "demo-qlora.yaml", 1.5, True),
    # Answers are JSON of up to 38 tokens (EXTRACT_SCHEMA), for response_format json_schema.
    "demo-extract-lora": DemoAdapter("lora", "demo-extract-lora.yaml", 1.5, True, 48, ("json_match",)),
}
PRETRAIN_MINUTES = 4.0

log = logging.getLogger("training")


def recipe_for(command: str, file: str, out: Path, adapters: Path, minutes: float):
    """A shipped demo recipe with its `.demo/` paths moved under `out` and a time budget."""
    raw = json.loads(json.dumps(read_yaml(RECIPES / file)).replace('".demo/', f'"{out.as_posix()}/'))
    raw["train"]["max_minutes"] = minutes
    # Without native bf16 the autocast is emulated: a step cost 3-20x a float32 one on an AVX2-only
    # 2-core CPU, and with a time budget that means 3-20x fewer steps.
    raw["train"]["bf16"] = raw["train"].get("bf16", False) and native_bf16()
    raw.setdefault("output", {})["adapters_dir"] = str(adapters)
    return load_recipe(command, METHODS[command].sections, raw, source=str(RECIPES / file))


def evaluate_run(run: dict, base: Path, test_file: str, base_test_file: str, adapter: DemoAdapter) -> dict:
    template = resolve_template("chat")
    examples = read_valid(test_file, "messages", "error", Counter(), 200)
    other = read_valid(base_test_file, "messages", "error", Counter(), 100) if adapter.forgetting else None
    return compare(base, run["artifact"], examples, template, "exact_match", adapter.max_new_tokens, other,
                   adapter.task_metrics)


def up_to_date(out: Path, adapters: Path) -> bool:
    stamp = out / "demo.json"
    return (stamp.exists() and json.loads(stamp.read_text()).get("version") == DEMO_VERSION
            and (out / "base" / "config.json").exists()
            and all((adapters / name / "manifest.json").exists() for name in ADAPTERS))


def build(out: Path, adapters: Path) -> None:
    if up_to_date(out, adapters):
        print(f"demo is up to date in {out} and {adapters} (see {out / 'report.md'})")
        return
    started = time.monotonic()
    shutil.rmtree(out, ignore_errors=True)
    data = write_demo_data(out / "data")
    build_base_model(out / "init", spec=SPEC, dtype="float32")

    print(f"[demo] pretraining the base model ({PRETRAIN_MINUTES} min budget)")
    pre = train(recipe_for("full", "demo-pretrain.yaml", out, adapters, PRETRAIN_MINUTES), METHODS["full"])
    shutil.copytree(pre["artifact"], out / "base")
    base = out / "base"

    report = {"version": DEMO_VERSION, "base": {"steps": pre["training"]["steps"],
                                                "seconds": pre["training"]["seconds"]}, "adapters": {}}
    for name, adapter in ADAPTERS.items():
        command = adapter.command
        print(f"[demo] training {name} ({command}, {adapter.minutes} min budget)")
        recipe = recipe_for(command, adapter.recipe, out, adapters, adapter.minutes)
        run = train(recipe, METHODS[command])
        run["evaluation"] = evaluate_run(run, base, recipe.data.test, str(data["base-test"]), adapter)
        run_dir = Path(recipe.train.output_dir)
        (run_dir / "run.json").write_text(json.dumps(run, indent=2, default=str))
        publish_run(run_dir, name, adapters)
        report["adapters"][name] = {"method": command, "steps": run["training"]["steps"],
                                    "seconds": run["training"]["seconds"], "evaluation": run["evaluation"]}
    report["build_seconds"] = round(time.monotonic() - started, 1)
    write_report(out, report)
    (out / "demo.json").write_text(json.dumps(report, indent=2))
    print((out / "report.md").read_text())


def write_report(out: Path, report: dict) -> None:
    lines = [f"# Demo build {report['version']}", "",
             f"Built in {report['build_seconds']} s. Base: {report['base']['steps']} steps "
             f"in {report['base']['seconds']} s.", ""]
    for name, r in report["adapters"].items():
        lines += [f"## {name} ({r['method']}, {r['steps']} steps in {r['seconds']} s)", "",
                  table(r["evaluation"]), ""]
        for sample in r["evaluation"]["task"]["tuned"]["samples"][:2]:
            lines.append(f"- {sample['prompt']!r} -> {sample['got']!r} (expected {sample['expected']!r})")
        lines.append("")
    (out / "report.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m training.demo")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the demo model and adapters (cached)")
    b.add_argument("--out", type=Path, default=Path(".demo"), help="where the base model goes")
    b.add_argument("--adapters", type=Path, default=Path("adapters"), help="adapters directory")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars; the training bars stay
    build(args.out, args.adapters)


if __name__ == "__main__":
    main()
