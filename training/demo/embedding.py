"""The demo's embedding adapter: `training contrastive` on the paraphrase pairs, published for a pooling server.

It goes to OUT/pooling-adapters, not the shared adapters directory: `make serve` runs the
generate runner, which refuses an adapter whose manifest says runner pooling (listed as an
error in /v1/adapters, a warning in the log), and the benchmark's transformers+PEFT baseline
(loadtests/bench/hf_peft_server.py) loads every LoRA it finds there. Served by

    python -m server --runner pooling --convert embed --model OUT/base --adapters OUT/pooling-adapters
"""

from __future__ import annotations

from pathlib import Path

from training.demo.recipes import recipe_for
from training.embeddings.contrastive import SECTIONS, train_contrastive
from training.embeddings.retrieval import table
from training.publish import publish_run

NAME = "demo-paraphrase-embed"
RECIPE = "contrastive-demo.yaml"
MINUTES = 0.5


def pooling_adapters(out: Path) -> Path:
    return out / "pooling-adapters"


def train_embedding(out: Path, minutes: float = MINUTES, overrides: dict | None = None) -> dict:
    """Train on OUT/data/paraphrase-*.jsonl, score retrieval base vs adapter, publish; the report's entry."""
    print(f"[demo] training {NAME} (contrastive, {minutes:g} min budget)")
    recipe = recipe_for("contrastive", RECIPE, out, pooling_adapters(out), minutes, SECTIONS, overrides)
    summary = train_contrastive(recipe)
    published = publish_run(Path(recipe.train.output_dir), NAME, pooling_adapters(out))
    t = summary["training"]
    return {"name": NAME, "steps": t["steps"], "seconds": t["seconds"],
            "trainable_parameters": t["trainable_parameters"], "evaluation": summary["evaluation"],
            "published": str(published)}


def embedding_section(r: dict, out: Path) -> list[str]:
    lines = [f"## {r['name']} (contrastive embedding LoRA, {r['steps']} steps in {r['seconds']} s)", "",
             "Anchors retrieve their paraphrase among all held-out positives (cosine of the served embedding: "
             "last token, L2-normalised):", ""]
    if r.get("evaluation"):
        lines += [table(r["evaluation"], r["trainable_parameters"], r["seconds"]), ""]
    lines += [f"Published into `{r['published']}` (its manifest says runner pooling, task embed, so the "
              "generate server of `make serve` does not serve it); serve it with", "",
              f"    python -m server --runner pooling --convert embed --model {out / 'base'} "
              f"--adapters {pooling_adapters(out)}", ""]
    return lines
