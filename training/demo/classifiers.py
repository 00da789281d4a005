"""The demo's classifiers: one 3-class review sentiment set, learned four ways on the demo base.

    head      fine-tuning I: a new `score` head, the backbone frozen     (classifier-head.yaml)
    full      fine-tuning II: every weight                               (classifier-full.yaml)
    lora      LoRA + the new head, merged into a model directory         (classifier-lora.yaml)
    features  the frozen base's last-token features + logistic regression (training features)

Each is the `classifier` / `features` command's own code (training/classification/) on
OUT/data/sentiment-{train,test}.jsonl; the models stay in OUT/runs (not published: a classifier
is served as a model, `python -m server --runner pooling --model OUT/runs/classifier-head/model`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from training.classification.features import FeaturesConfig, run_features
from training.classification.metrics import table
from training.classification.train import SECTIONS, train_classifier
from training.demo.recipes import recipe_for


@dataclass(frozen=True)
class DemoClassifier:
    recipe: str
    minutes: float


CLASSIFIERS = {
    "head (fine-tuning I)": DemoClassifier("classifier-head.yaml", 0.4),
    "full (fine-tuning II)": DemoClassifier("classifier-full.yaml", 0.5),
    "lora (merged)": DemoClassifier("classifier-lora.yaml", 0.5),
}
FEATURES = "features (logistic regression)"
COLUMNS = {"method": "method", "accuracy": "accuracy", "macro_f1": "macro-F1",
           "trainable_parameters": "trainable parameters", "seconds": "training seconds"}


def row(method: str, evaluation: dict, steps: int | None, artifact: str) -> dict:
    keep = ("accuracy", "macro_f1", "trainable_parameters", "total_parameters", "seconds", "examples", "labels",
            "confusion_matrix")
    return {"method": method, **{k: evaluation[k] for k in keep if k in evaluation}, "steps": steps,
            "artifact": artifact}


def train_classifiers(out: Path, base: Path, test_examples: int, minutes_scale: float = 1.0,
                      overrides: dict | None = None, threads: int = 0) -> list[dict]:
    """Train and score every demo classifier on OUT/data/sentiment-*.jsonl; one row per method.

    `test_examples`: score all of the test file (the recipes' eval_examples default is 200);
    `overrides` go to the classifier recipes ({"train": {"max_steps": 2}}, for tests)."""
    overrides = {**(overrides or {}), "output": {"eval_examples": test_examples,
                                                 **(overrides or {}).get("output", {})}}
    rows = []
    for method, spec in CLASSIFIERS.items():
        print(f"[demo] training the {method} classifier ({spec.minutes * minutes_scale:g} min budget)")
        recipe = recipe_for("classifier", spec.recipe, out, out / "runs", spec.minutes * minutes_scale, SECTIONS,
                            overrides)
        summary = train_classifier(recipe)
        rows.append(row(method, summary["evaluation"], summary["training"]["steps"], summary["artifact"]))
    print("[demo] fitting the feature-based classifier (frozen base + logistic regression)")
    data = out / "data"
    summary = run_features(FeaturesConfig(base=str(base), train=str(data / "sentiment-train.jsonl"),
                                          test=str(data / "sentiment-test.jsonl"), classifier="logistic",
                                          threads=threads, out=str(out / "runs" / "classifier-features")))
    rows.append(row(FEATURES, summary["evaluation"], None, summary["artifact"]))
    return rows


def classifier_section(rows: list[dict]) -> list[str]:
    """The report's classifier lines: one table, where the models are, how to serve one."""
    examples = rows[0].get("examples", "?") if rows else "?"
    labels = ", ".join(rows[0].get("labels", [])) if rows else ""
    lines = ["## Review sentiment classifiers (3 classes)", "",
             f"One data set ({labels}; {examples} held-out reviews), learned four ways on the demo base. "
             "Training seconds of `features` are embedding the training set plus fitting.", "",
             table([{**r, "seconds": f"{r['seconds']:.1f}"} for r in rows], COLUMNS), ""]
    for r in rows:
        steps = f", {r['steps']} steps" if r.get("steps") is not None else ""
        lines.append(f"- {r['method']}{steps}: `{r['artifact']}`")
    lines += ["", "Not published into the adapters directory: a classifier is a model, served with "
              "`python -m server --runner pooling --model RUN/model` (POST /classify); "
              "the feature-based one is `classifier.safetensors` beside the frozen base "
              "(training/classification/features.py).", ""]
    return lines
