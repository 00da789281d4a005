"""Classification metrics (scikit-learn) and the markdown table every classifier command prints.

    report = classification_report(["pos", "neg"], ["pos", "pos"], labels=["neg", "pos"])
    # {"examples": 2, "accuracy": 0.5, "macro_f1": 0.333..., "labels": ["neg", "pos"],
    #  "confusion_matrix": [[0, 1], [0, 1]]}       rows: true label, columns: predicted label
    print(table([{"approach": "head", **report}]))
"""

from __future__ import annotations

from collections.abc import Sequence

from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

# What `table` shows of a report, in this order, under these headers.
COLUMNS = {"accuracy": "accuracy", "macro_f1": "macro-F1", "trainable_parameters": "trainable params",
           "total_parameters": "total params", "seconds": "seconds"}


def classification_report(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> dict:
    """Accuracy, macro-F1 (every label weighs the same, also one never predicted: its F1 is 0) and
    the confusion matrix [true label][predicted label] in `labels` order."""
    labels = list(labels)
    return {
        "examples": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "labels": labels,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(rows: Sequence[dict], columns: dict[str, str] | None = None) -> str:
    """A markdown table: one row per dict. `columns` maps key -> header; by default the row's
    first key (its name) and whichever of COLUMNS the rows have."""
    if not rows:
        return ""
    if columns is None:
        first = next(iter(rows[0]))
        columns = {first: first, **{k: h for k, h in COLUMNS.items() if any(k in r for r in rows)}}
    lines = ["| " + " | ".join(columns.values()) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(k, "")) for k in columns) + " |" for r in rows]
    return "\n".join(lines)


def confusion_table(report: dict) -> str:
    """The report's confusion matrix as a markdown table (rows: true label, columns: predicted)."""
    labels = report["labels"]
    rows = [{"true \\ predicted": t, **dict(zip(labels, counts))}
            for t, counts in zip(labels, report["confusion_matrix"])]
    return table(rows, {"true \\ predicted": "true \\ predicted", **{label: label for label in labels}})
