"""Fine-tune a sequence classifier on labelled texts: fine-tuning I / II or LoRA, then score it.

    python -m training classifier --config training/recipes/classifier-head.yaml [--key value ...] [--publish]

The base (a causal-LM directory, or a sequence classifier whose labels are the data's) is loaded
with AutoModelForSequenceClassification: the backbone's last-token hidden state [hidden] times a
`score` head [num_labels, hidden] gives the logits (a causal LM gets a new head, initialised by
transformers). `classifier.mode` says what trains (training/classification/modes.py). Training is
a transformers Trainer (cross-entropy), with the shared time budget (train.max_minutes).

Run directory (train.output_dir, default runs/NAME):
    model/     head, last_layers, full, and lora on a causal-LM base (merged): a classifier the
               pooling runner serves, `python -m server --runner pooling --model RUN/model` (/classify)
    adapter/   lora: the PEFT adapter. On a causal-LM base only a record (its head is modules_to_save);
               on a classifier base a plain LoRA of the backbone that the server serves per request
               on that base (`--runner pooling --model BASE --adapters DIR`), published by --publish
    run.json   data, hyper-parameters, training figures and "evaluation" on the test split: accuracy,
               macro-F1, confusion matrix, trainable / total parameters, training seconds
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

from training.classification.data import ClassificationDataConfig, LabelledSplits, encode_texts, load_labelled
from training.classification.loading import load_classifier, load_tokenizer
from training.classification.metrics import classification_report, confusion_table, table
from training.classification.modes import ClassifierOptions, classifier_labels, make_trainable, refuse_classifier
from training.recipe import Recipe
from training.devices import cpu_threads, enable_gradient_checkpointing, gradient_checkpointing, training_dtype
from training.distributed import full_state_dict, on_main_then_wait
from training.methods.common import BaseFacts, Method, adapter_name, preflight, run_dir, save_result
from training.methods.lora import LoraOptions
from training.sections import ModelConfig, OutputConfig, TrainConfig
from training.rlhf.common import trainer_args

log = logging.getLogger("training")

SECTIONS = {"model": ModelConfig, "data": ClassificationDataConfig, "train": TrainConfig,
            "classifier": ClassifierOptions, "lora": LoraOptions, "output": OutputConfig}


@torch.no_grad()
def predict(model, tokenizer, texts: Sequence[str], labels: Sequence[str], batch_size: int = 32,
            max_length: int = 256) -> list[str]:
    """The label with the highest logit for each text (right-padded batches; the model scores
    each text's last non-pad token, as the server's LAST pooling scores its last token)."""
    model.eval()
    device = next(model.parameters()).device
    predicted: list[str] = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(list(texts[start:start + batch_size]), return_tensors="pt", padding=True,
                        padding_side="right", truncation=True, max_length=max_length).to(device)
        predicted += [labels[i] for i in model(**enc).logits.argmax(-1).tolist()]  # logits [batch, num_labels]
    return predicted


def _method(produces: str, labels: Sequence[str]) -> Method:
    """The shared pipeline's view of this run (pre-flight, save): an adapter or a model directory.
    A model directory's run trains a head in full (and layers, in last_layers and full mode); a
    LoRA of a classifier base trains adapter weights only."""
    return Method(name="classifier", help="sequence classifier", produces=produces,  # type: ignore[arg-type]
                  refuse=lambda recipe, facts: refuse_classifier(recipe, facts, labels),
                  trains_base_weights=produces == "model")


def train_classifier(recipe: Recipe) -> dict:
    """Run one classifier recipe end to end; returns the run summary (also written to run.json)."""
    from training.methods.budget import trainer_class

    t, mode = recipe.train, recipe.classifier.mode
    data = load_labelled(recipe.data, seed=t.seed)
    on_classifier = recipe.model.base and Path(recipe.model.base, "config.json").is_file() \
        and classifier_labels(recipe.model.base) is not None
    method = _method("adapter" if mode == "lora" and on_classifier else "model", data.labels)
    facts = preflight(recipe, method)
    out = run_dir(recipe)
    out.mkdir(parents=True, exist_ok=True)
    set_seed(t.seed)
    if not torch.cuda.is_available():
        torch.set_num_threads(cpu_threads(t.threads))
    tokenizer = load_tokenizer(recipe.model.base)
    log.warning(f"classifier: labels {data.labels}; train {len(data.train)}, validation {len(data.validation)}, "
                f"test {len(data.test)}")
    train_ds = encode_texts(data.train, tokenizer, data.labels, recipe.data.max_length)
    val_ds = encode_texts(data.validation, tokenizer, data.labels, recipe.data.max_length) if data.validation \
        else None

    args = trainer_args(TrainingArguments, recipe, out,  # before the model: ZeRO-3 loads only its partition
                        eval_strategy="steps" if val_ds is not None and t.eval_steps > 0 else "no",
                        eval_steps=t.eval_steps or None)
    dtype = training_dtype(recipe, method.trains_base_weights)
    model = load_classifier(recipe.model.base, data.labels, dtype, tokenizer.pad_token_id)
    if gradient_checkpointing(recipe):
        enable_gradient_checkpointing(model)
    model = make_trainable(model, recipe, new_head=not on_classifier)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log.warning(f"classifier {mode}: training {trainable:,} of {total:,} parameters ({100 * trainable / total:.2f}%)")

    trainer_cls, callbacks = trainer_class(t.max_minutes, t.lr_scheduler, base=Trainer)
    trainer = trainer_cls(model=model, args=args, train_dataset=train_ds, eval_dataset=val_ds,
                          processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer),
                          callbacks=callbacks)
    resume = get_last_checkpoint(str(out)) if t.resume else None
    if t.resume and resume is None:
        log.warning(f"--resume: no checkpoint in {out}, starting from scratch")
    started = time.monotonic()
    result = trainer.train(resume_from_checkpoint=resume)
    training: dict[str, Any] = {"steps": result.global_step, "train_loss": result.training_loss,
                                "seconds": round(time.monotonic() - started, 1), "threads": torch.get_num_threads(),
                                "trainable_parameters": trainable, "total_parameters": total,
                                "dtype": str(dtype).removeprefix("torch."), "resumed_from": resume}
    if val_ds is not None:
        training["eval_loss"] = trainer.evaluate()["eval_loss"]  # every process: a collective
    state_dict = full_state_dict(trainer)  # a collective too, under FSDP / DeepSpeed
    saved = on_main_then_wait(lambda: save_classifier(trainer.model, method, out, tokenizer, facts, recipe,
                                                      state_dict))
    return on_main_then_wait(lambda: finish_classifier(recipe, method, out, data, training, facts, tokenizer,
                                                       *saved)) or {"training": training}


def save_classifier(model, method: Method, out: Path, tokenizer, facts: BaseFacts, recipe: Recipe,
                    state_dict: dict[str, torch.Tensor] | None) -> tuple[Path, Any]:
    """Write RUN/model or RUN/adapter (main process); return it and the model it holds, for evaluation."""
    if method.produces == "adapter" or recipe.classifier.mode != "lora":
        return save_result(model, method, out, tokenizer, facts, recipe, state_dict), model
    # LoRA with a new head: the adapter for the record, and the served form, LoRA merged into the
    # backbone (W + alpha/r · B @ A) with the trained head in place of modules_to_save's wrapper.
    model.save_pretrained(str(out / "adapter"), safe_serialization=True, state_dict=state_dict)
    merged = model.merge_and_unload()
    return save_result(merged, method, out, tokenizer, facts, recipe), merged


def finish_classifier(recipe: Recipe, method: Method, out: Path, data: LabelledSplits, training: dict,
                      facts: BaseFacts, tokenizer, artifact: Path, model) -> dict:
    """Score the test split, write run.json, print the table, publish: the main process's work."""
    evaluation = None
    if recipe.output.evaluate and data.test:
        test = data.test[: recipe.output.eval_examples]
        predicted = predict(model, tokenizer, [r.text for r in test], data.labels, recipe.train.batch_size,
                            recipe.data.max_length)
        evaluation = {**classification_report([r.label for r in test], predicted, data.labels),
                      **{k: training[k] for k in ("trainable_parameters", "total_parameters", "seconds")}}
        print(table([{"mode": recipe.classifier.mode, **evaluation}]))
        print(confusion_table(evaluation))
    summary = {
        "name": adapter_name(recipe),
        "method": "classifier",
        "mode": recipe.classifier.mode,
        "produces": method.produces,
        # What serves it: the pooling runner as a classifier (training.publish puts both in the manifest).
        "runner": "pooling",
        "task": "classify",
        "base_model": str(facts.path.resolve()),
        "prompt_template": None,
        "labels": data.labels,
        "data": {"file": recipe.data.train, **data.report},
        "hyperparameters": recipe.to_dict(),
        "training": training,
        "evaluation": evaluation,
        "artifact": str(artifact),
    }
    if recipe.classifier.mode == "lora" and method.produces == "model":
        summary["adapter"] = str(out / "adapter")  # lora on a causal LM: the record beside the merged model
    (out / "run.json").write_text(json.dumps(summary, indent=2, default=str))
    log.warning(f"classifier {recipe.classifier.mode}: wrote {artifact}")
    if recipe.output.publish:
        from training.publish import publish_run

        summary["published"] = str(publish_run(out, adapters_dir=recipe.output.adapters_dir))
    return summary
