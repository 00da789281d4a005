"""Publish a trained adapter into the server's adapters directory, atomically, with a manifest.

    python -m training publish --run runs/my-lora [--name my-lora] [--adapters-dir adapters]

The adapter is copied into a hidden sibling (`adapters/.NAME.tmp-*`, a name the server never
serves), the manifest is written there, then the directory is renamed into place: a running
server (which hot-loads) sees either the old adapter or the whole new one, never half of one.
A replacement swaps the two directories in one step (Linux `renameat2(RENAME_EXCHANGE)`), so
requests arriving meanwhile never find the name missing.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from adapter_formats.manifest import base_model_identity, write_manifest
from adapter_formats.paths import is_valid_name

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def manifest_from_run(summary: dict) -> dict:
    """The manifest fields (adapter_formats/manifest.py) from a run's run.json."""
    base = Path(summary["base_model"])
    data = summary.get("data", {})
    return {
        "name": summary["name"],
        "method": summary["method"],
        # Which server serves it (--runner; --convert for pooling): runs that predate pooling,
        # and every generation method, say nothing and are for generation.
        "runner": summary.get("runner", "generate"),
        **({"task": summary["task"]} if summary.get("task") else {}),
        "base_model": {"identity": base_model_identity(base), "path": str(base.resolve())},
        "prompt_template": summary["prompt_template"],
        "data": {"file": data.get("file"), "sha256": data.get("sha256"),
                 "examples": (data.get("train") or {}).get("examples")},
        "hyperparameters": summary.get("hyperparameters", {}),
        "training": summary.get("training", {}),
        "evaluation": _without_samples(summary.get("evaluation")),
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _without_samples(evaluation: dict | None) -> dict | None:
    """Metrics only: sample generations stay in run.json."""
    if not evaluation:
        return evaluation
    return {k: ({side: {m: v for m, v in r.items() if m != "samples"} for side, r in val.items()}
                if isinstance(val, dict) else val) for k, val in evaluation.items()}


def publish_adapter(adapter_dir: str | Path, name: str, adapters_dir: str | Path, manifest: dict) -> Path:
    """Copy `adapter_dir` to `adapters_dir/name` with `manifest.json`, atomically; return the target."""
    if not is_valid_name(name):
        raise ValueError(f"adapter name {name!r}: use letters, digits, '.', '_', '-' (no leading dot)")
    source, root = Path(adapter_dir), Path(adapters_dir)
    missing = [f for f in ADAPTER_FILES if not (source / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{source} is not a PEFT adapter (missing {missing})")
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root))
    try:
        for f in ADAPTER_FILES:
            shutil.copyfile(source / f, staging / f)
        write_manifest(staging, {**manifest, "name": name})
        for f in staging.iterdir():  # data on disk before the rename makes it visible
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        target = root / name
        if target.exists() and _exchange(staging, target):
            pass  # the old adapter is now in `staging`, removed below
        elif target.exists():
            # Directories cannot be renamed over non-empty ones: move the old one aside first
            # (the server then briefly sees no adapter, never a mixed one), then drop it.
            old = Path(tempfile.mkdtemp(prefix=f".{name}.old-", dir=root))
            os.rename(target, old / name)
            os.rename(staging, target)
            shutil.rmtree(old)
        else:
            os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically; False where the system cannot (not Linux, old kernel or libc,
    a filesystem without RENAME_EXCHANGE)."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2  # <fcntl.h>, <linux/fs.h>
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def publish_run(run_dir: str | Path, name: str | None = None, adapters_dir: str | Path = "adapters") -> Path:
    """Publish the adapter of a finished run (its run.json says the rest)."""
    run_dir = Path(run_dir)
    summary_file = run_dir / "run.json"
    if not summary_file.is_file():
        raise FileNotFoundError(f"{run_dir} has no run.json: not a finished training run")
    summary = json.loads(summary_file.read_text())
    if summary.get("produces") != "adapter":
        raise ValueError(f"{run_dir} holds a full model ({summary.get('method')}), not an adapter: serve it "
                         f"with `python -m server --model {run_dir / 'model'}`")
    target = publish_adapter(run_dir / "adapter", name or summary["name"], adapters_dir, manifest_from_run(summary))
    print(f"published {target}")
    return target


@dataclass
class PublishConfig:
    """Publish a finished run's adapter into the server's adapters directory."""

    run: str = ""
    """Run directory of a finished training run (holds adapter/ and run.json)."""
    name: str | None = None
    """Adapter name (default: the run's name)."""
    adapters_dir: str = "adapters"
    """The server's --adapters directory."""


def run_publish(cfg: PublishConfig) -> Path:
    if not cfg.run:
        raise ValueError("publish needs --run RUN_DIR")
    return publish_run(cfg.run, cfg.name, cfg.adapters_dir)
