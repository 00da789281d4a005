"""The feature-based approach: a frozen LLM's embeddings as features, a small scikit-learn classifier on top.

    python -m training features --base B --train train.jsonl --test test.jsonl [--pooling last|mean]
                                [--normalize l2|standard] [--classifier logistic|mlp] [--out DIR]

Features are the backbone's final hidden states (after its last norm) [hidden] per text: the last
token's (`last`, what the server's `--convert embed` pools, see tests/oracle.py embedding) or the
mean over the non-pad tokens (`mean`); then L2-normalised or standardised (train-set mean and
scale). No weight of the base changes (no gradients at all); only the classifier is fitted.

OUT (default runs/features-BASE):
    classifier.safetensors   the fitted classifier, never pickled: `coef.{i}` [in, out]-per-layer
                             weights and `intercept.{i}` (logistic regression: one layer, coef
                             [classes, features] as scikit-learn keeps it), `mean` / `scale` when
                             standardised; metadata: classes, classifier, pooling, normalize, base
    run.json                 data, options and "evaluation": accuracy, macro-F1, confusion matrix,
                             trainable parameters (the classifier's), total, seconds

    clf = FeatureClassifier.load("OUT/classifier.safetensors")   # with training.classification.loading:
    clf.predict(embed(*load_backbone(clf.meta["base"]), texts, pooling=clf.meta["pooling"]))
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler, normalize

from training.classification.data import ClassificationDataConfig, load_labelled
from training.classification.loading import load_backbone
from training.classification.metrics import classification_report, confusion_table, table
from training.devices import cpu_threads

log = logging.getLogger("training")


@dataclass
class FeaturesConfig:
    """Frozen-LLM features + a scikit-learn classifier, scored on a test split."""

    base: str = ""
    """Model directory whose backbone gives the features (a causal LM or a classifier; never changed)."""
    train: str = ""
    """Training file: JSONL rows with a `text` and a string `label`."""
    test: str | None = None
    """Test file; if unset, `test_fraction` of the training rows are held out."""
    test_fraction: float = 0.1
    """Fraction of training rows held out for testing when no test file is given."""
    labels: list[str] = field(default_factory=list)
    """The label set (order of the confusion matrix); empty: the training file's labels, sorted."""
    pooling: Literal["last", "mean"] = "last"
    """last: the last token's final hidden state (the server's --convert embed); mean: over the text's tokens."""
    normalize: Literal["l2", "standard"] = "l2"
    """l2: each feature vector scaled to unit length; standard: each dimension to zero mean, unit variance."""
    classifier: Literal["logistic", "mlp"] = "logistic"
    """logistic: multinomial logistic regression; mlp: one hidden ReLU layer of `hidden` units."""
    hidden: int = 64
    """Hidden units of the mlp classifier."""
    regularization: float = 1.0
    """Inverse regularisation strength C of the logistic regression (smaller: stronger)."""
    max_iter: int = 1000
    """Most iterations of the classifier's solver."""
    batch_size: int = 32
    """Texts per forward pass of the base."""
    max_length: int = 256
    """Longest tokenized text; longer ones are cut at the end."""
    seed: int = 0
    """Seed of the held-out split and the classifier's initialisation."""
    threads: int = 0
    """CPU threads for torch (0: auto, the cores not already busy)."""
    out: str = ""
    """Output directory (classifier.safetensors, run.json); default runs/features-BASE."""


@torch.no_grad()
def embed(model, tokenizer, texts: Sequence[str], pooling: str = "last", batch_size: int = 32,
          max_length: int = 256) -> np.ndarray:
    """Pooled final hidden states, [len(texts), hidden] float32."""
    out = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(list(texts[start:start + batch_size]), return_tensors="pt", padding=True,
                        padding_side="right", truncation=True, max_length=max_length)
        hidden = model(**enc).last_hidden_state  # [batch, seq, hidden], after the final norm
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [batch, seq, 1], 0 on padding
        if pooling == "last":  # right padding: the last real token is at length - 1
            pooled = hidden[torch.arange(len(hidden)), enc["attention_mask"].sum(1) - 1]
        else:
            pooled = (hidden * mask).sum(1) / mask.sum(1)
        out.append(pooled.float().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.hidden_size), np.float32)


class FeatureClassifier:
    """Normalisation + a fitted scikit-learn classifier, saved to and loaded from safetensors."""

    def __init__(self, estimator, normalize: str, scaler: StandardScaler | None = None, meta: dict | None = None):
        self.estimator, self.normalize, self.scaler, self.meta = estimator, normalize, scaler, meta or {}

    @classmethod
    def fit(cls, features: np.ndarray, labels: Sequence[str], cfg: FeaturesConfig) -> "FeatureClassifier":
        scaler = StandardScaler().fit(features) if cfg.normalize == "standard" else None
        if cfg.classifier == "logistic":
            estimator = LogisticRegression(C=cfg.regularization, max_iter=cfg.max_iter, random_state=cfg.seed)
        else:
            estimator = MLPClassifier(hidden_layer_sizes=(cfg.hidden,), max_iter=cfg.max_iter, random_state=cfg.seed)
        clf = cls(estimator, cfg.normalize, scaler, {"classifier": cfg.classifier, "pooling": cfg.pooling,
                                                     "normalize": cfg.normalize, "base": str(Path(cfg.base).resolve())})
        estimator.fit(clf.transform(features), list(labels))
        return clf

    def transform(self, features: np.ndarray) -> np.ndarray:
        return self.scaler.transform(features) if self.scaler is not None else normalize(features)

    def predict(self, features: np.ndarray) -> list[str]:
        # argmax of the class probabilities: what estimator.predict does, and all a reloaded one needs.
        proba = self.estimator.predict_proba(self.transform(features))  # [n, classes]
        return [str(self.estimator.classes_[i]) for i in proba.argmax(1)]

    def weights(self) -> dict[str, np.ndarray]:
        e = self.estimator
        layers = ([e.coef_], [e.intercept_]) if isinstance(e, LogisticRegression) else (e.coefs_, e.intercepts_)
        tensors = {f"{name}.{i}": np.ascontiguousarray(a, dtype=np.float64)
                   for name, arrays in zip(("coef", "intercept"), layers) for i, a in enumerate(arrays)}
        if self.scaler is not None:
            tensors |= {"mean": self.scaler.mean_, "scale": self.scaler.scale_}
        return tensors

    def parameters(self) -> int:
        """Trained numbers: the classifier's weights and biases (not the scaler's statistics)."""
        return sum(a.size for k, a in self.weights().items() if k.startswith(("coef.", "intercept.")))

    def save(self, path: str | Path) -> Path:
        meta = {**self.meta, "classes": json.dumps([str(c) for c in self.estimator.classes_])}
        save_file(self.weights(), str(path), metadata=meta)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "FeatureClassifier":
        with safe_open(str(path), framework="numpy") as f:
            meta = dict(f.metadata())
        tensors = load_file(str(path))
        classes = np.array(json.loads(meta.pop("classes")))
        n_layers = sum(k.startswith("coef.") for k in tensors)
        coefs = [tensors[f"coef.{i}"] for i in range(n_layers)]
        intercepts = [tensors[f"intercept.{i}"] for i in range(n_layers)]
        # The fitted attributes scikit-learn's predict_proba reads, set from the saved arrays.
        if meta["classifier"] == "logistic":  # coef [classes (1 if two), features]
            estimator = LogisticRegression()
            estimator.coef_, estimator.intercept_ = coefs[0], intercepts[0]
            estimator.n_features_in_ = coefs[0].shape[1]
        else:  # coefs [features, hidden], [hidden, classes (1 if two)]
            estimator = MLPClassifier(hidden_layer_sizes=tuple(c.shape[1] for c in coefs[:-1]))
            estimator.coefs_, estimator.intercepts_ = coefs, intercepts
            estimator.n_layers_, estimator.n_outputs_ = n_layers + 1, coefs[-1].shape[1]
            estimator.out_activation_ = "logistic" if coefs[-1].shape[1] == 1 else "softmax"
            estimator.n_features_in_ = coefs[0].shape[0]
        estimator.classes_ = classes
        scaler = None
        if "mean" in tensors:
            scaler = StandardScaler()
            scaler.mean_, scaler.scale_ = tensors["mean"], tensors["scale"]
            scaler.var_, scaler.n_features_in_ = tensors["scale"] ** 2, len(tensors["mean"])
        return cls(estimator, meta["normalize"], scaler, meta)


def run_features(cfg: FeaturesConfig) -> dict:
    """Embed, fit, score, save; returns the run summary (also written to OUT/run.json)."""
    if not cfg.base or not cfg.train:
        raise ValueError("features needs --base MODEL_DIR and --train FILE")
    if not torch.cuda.is_available():
        torch.set_num_threads(cpu_threads(cfg.threads))
    data = load_labelled(ClassificationDataConfig(train=cfg.train, test=cfg.test, labels=list(cfg.labels),
                                                  validation_fraction=0.0, test_fraction=cfg.test_fraction,
                                                  max_length=cfg.max_length), seed=cfg.seed)
    out = Path(cfg.out or f"runs/features-{Path(cfg.base).name}")
    out.mkdir(parents=True, exist_ok=True)
    model, tokenizer = load_backbone(cfg.base)
    started = time.monotonic()
    train_x = embed(model, tokenizer, [r.text for r in data.train], cfg.pooling, cfg.batch_size, cfg.max_length)
    embedded = time.monotonic()
    clf = FeatureClassifier.fit(train_x, [r.label for r in data.train], cfg)
    seconds = {"embedding_seconds": round(embedded - started, 2), "fit_seconds": round(time.monotonic() - embedded, 2),
               "seconds": round(time.monotonic() - started, 2)}
    clf.save(out / "classifier.safetensors")
    evaluation = None
    if data.test:
        test_x = embed(model, tokenizer, [r.text for r in data.test], cfg.pooling, cfg.batch_size, cfg.max_length)
        evaluation = {**classification_report([r.label for r in data.test], clf.predict(test_x), data.labels),
                      "trainable_parameters": clf.parameters(),
                      "total_parameters": clf.parameters() + sum(p.numel() for p in model.parameters()),
                      **seconds}
        print(table([{"approach": f"features ({cfg.pooling}, {cfg.classifier})", **evaluation}]))
        print(confusion_table(evaluation))
    summary = {"method": "features", "base_model": str(Path(cfg.base).resolve()), "labels": data.labels,
               "data": {"file": cfg.train, **data.report}, "hyperparameters": asdict(cfg),
               "artifact": str(out / "classifier.safetensors"), "training": seconds, "evaluation": evaluation}
    (out / "run.json").write_text(json.dumps(summary, indent=2, default=str))
    log.warning(f"features: wrote {out / 'classifier.safetensors'}")
    return summary
