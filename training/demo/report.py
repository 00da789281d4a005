"""OUT/report.md from the build's report dict (also OUT/demo.json): one section per step that ran."""

from __future__ import annotations

from pathlib import Path

from training.demo.classifiers import classifier_section
from training.demo.embedding import embedding_section
from training.demo.ratings import elo_section
from training.evaluation.held_out import table


def render(out: Path, report: dict) -> str:
    lines = [f"# Demo build {report['version']}", "",
             f"Built in {report['build_seconds']} s. Base: {report['base']['steps']} steps "
             f"in {report['base']['seconds']} s.", ""]
    if report.get("minutes_scale", 1.0) != 1.0:
        lines += [f"Time budgets scaled by {report['minutes_scale']}: a smoke build, its figures mean nothing.", ""]
    if report.get("step_seconds"):
        lines += ["Wall seconds per step (training, evaluation, publishing): "
                  + ", ".join(f"{k} {v}" for k, v in report["step_seconds"].items()) + ".", ""]
    for name, r in report["adapters"].items():
        lines += [f"## {name} ({r['method']}, {r['steps']} steps in {r['seconds']} s)", "",
                  table(r["evaluation"]), ""]
        for sample in r["evaluation"]["task"]["tuned"]["samples"][:2]:
            lines.append(f"- {sample['prompt']!r} -> {sample['got']!r} (expected {sample['expected']!r})")
        lines.append("")
    if report.get("classifiers"):
        lines += classifier_section(report["classifiers"])
    if report.get("embedding"):
        lines += embedding_section(report["embedding"], out)
    if report.get("elo"):
        lines += elo_section(report["elo"])
    return "\n".join(lines)


def write_report(out: Path, report: dict) -> Path:
    path = out / "report.md"
    path.write_text(render(out, report))
    return path
