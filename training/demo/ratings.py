"""The demo's Elo table: the base and every generation adapter on one mixed held-out set.

`per_task` prompts are drawn from each adapter's test set into OUT/data/elo-mixed.jsonl; every
competitor answers all of them, and each pair is judged by the task metric (exact match against
the reference), with training/evaluation/elo.py's own `run_elo` (ratings, bootstrap intervals,
elo.md / elo.png / elo.json in OUT/elo).
"""

from __future__ import annotations

import random
from dataclasses import asdict
from pathlib import Path

from training.evaluation.elo import EloConfig, run_elo

PER_TASK = 30


def mixed_set(test_files: dict[str, str | Path], per_task: int, path: Path, seed: int = 0) -> Path:
    """`per_task` rows of each test file (a seeded draw, in file order), one JSONL file."""
    rows: list[str] = []
    for name, file in test_files.items():
        lines = [line for line in Path(file).read_text(encoding="utf-8").splitlines() if line.strip()]
        picked = sorted(random.Random(f"{seed}:{name}").sample(range(len(lines)), min(per_task, len(lines))))
        rows += [lines[i] for i in picked]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in rows), encoding="utf-8")
    return path


def rate(out: Path, base: Path, adapters: list[Path], test_files: dict[str, str | Path], max_new_tokens: int,
         per_task: int = PER_TASK, rounds: int = 1000) -> dict:
    """Elo of the base and `adapters` on the mixed set; the report's entry."""
    data = mixed_set(test_files, per_task, out / "data" / "elo-mixed.jsonl")
    n = len(data.read_text(encoding="utf-8").splitlines())
    print(f"[demo] Elo: base and {len(adapters)} adapters on {n} mixed held-out prompts")
    cfg = EloConfig(base=str(base), adapters=[str(a) for a in adapters], data=str(data), template="chat",
                    judge="metric", metric="exact_match", limit=n, max_new_tokens=max_new_tokens,
                    rounds=rounds, out=str(out / "elo"))
    ratings = run_elo(cfg)
    counts = {name: min(per_task, len([x for x in Path(f).read_text(encoding="utf-8").splitlines() if x.strip()]))
              for name, f in test_files.items()}
    return {"prompts": n, "per_task": counts,
            "ratings": [asdict(r) for r in ratings], "table": (out / "elo" / "elo.md").read_text().strip(),
            "png": str(out / "elo" / "elo.png")}


def elo_section(r: dict) -> list[str]:
    sets = ", ".join(f"{k} {v}" for k, v in r["per_task"].items())
    return ["## Elo: base and generation adapters", "",
            f"Every model answers the same {r['prompts']} held-out prompts ({sets}); each pair is judged per "
            "prompt by exact match against the reference (the better score wins, equal scores tie; "
            "training/evaluation/elo.py).",
            "", r["table"], "", f"Plot: `{r['png']}`", ""]
