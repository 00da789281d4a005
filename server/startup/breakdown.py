"""The start-up's critical path, phase by phase, from the trace of all its processes.

    start-up 21.4 s to ready: imports 6.1, model files 0.3, engine config 0.4, engine core
    imports 5.2, plugin 0.1, workers 1.9 (weights 0.1), profile 4.6, kv cache 0.2, warm-up 0.0,
    adapters 0.0, other 2.6

Phases follow each other (none overlaps another), so they add up to the total; `other` is
what no phase covers (process hand-offs, vLLM's own bookkeeping). Two figures are shown inside
another's and not added up: `weights`, part of `workers`; and `preloaded`, the imports of a
prestarted engine core (`server.startup.prestart`), which ran beside the server's own `imports`
(its `engine core imports` are then only what was left at the hand-over). `profile` is where the
engine compiles the model on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.startup.trace import Event

API = "MainProcess"
# (label, process filter, phase): the critical path in order. None: any engine process.
PATH = (("imports", API, "imports"), ("model files", API, "model files"),
        ("engine config", API, "engine config"), ("engine core imports", "EngineCore", "imports"),
        ("plugin", "EngineCore", "plugin"), ("workers", "EngineCore", "workers"),
        ("profile", "EngineCore", "profile"), ("kv cache", "EngineCore", "kv cache"),
        ("warm-up", "EngineCore", "warm-up"), ("adapters", API, "adapters"))
# (label, process filter, phase, the phase it is shown in): beside the path, not added up.
ASIDE = (("weights", None, "weights", "workers"),
         ("preloaded", "EngineCore", "preload", "engine core imports"))


@dataclass(frozen=True)
class Breakdown:
    total: float
    phases: dict[str, float]
    """Critical-path phases in order, then those of `ASIDE` found, and `other`."""

    def line(self) -> str:
        parts = []
        aside = {label for label, *_ in ASIDE}
        for name, seconds in self.phases.items():
            if name in aside:
                continue
            part = f"{name} {seconds:.1f}"
            for label, _, _, shown_in in ASIDE:
                if shown_in == name and label in self.phases:
                    part += f" ({label} {self.phases[label]:.1f})"
            parts.append(part)
        return f"start-up {self.total:.1f} s to ready: " + ", ".join(parts)


def _first(events: list[Event], process: str | None, phase: str) -> Event | None:
    # The engine core's process name has no fixed suffix (EngineCore, EngineCore_DP0).
    return next((e for e in events if e.phase == phase
                 and (process is None or e.process.startswith(process))), None)


def breakdown(events: list[Event], began: float, ready: float) -> Breakdown:
    """`began`: the API process's creation time; `ready`: when the server turned ready."""
    phases: dict[str, float] = {}
    for label, process, phase in PATH:
        event = _first(events, process, phase)
        if event is not None:
            phases[label] = max(0.0, event.seconds)
    for label, process, phase, _ in ASIDE:
        event = _first(events, process, phase)
        if event is not None:
            phases[label] = event.seconds
    total = ready - began
    aside = {label for label, *_ in ASIDE}
    covered = sum(s for name, s in phases.items() if name not in aside)
    phases["other"] = max(0.0, total - covered)
    return Breakdown(total, phases)
