"""The adapter manifest (`manifest.json` beside the adapter's weights): its format and checks.

Written by `python -m training ... --publish`, read by the server. Every field is optional
except `format` and `base_model.identity`; unknown fields are kept and shown in /v1/adapters.

    {
      "format": 1,
      "name": "sql-lora",
      "method": "lora" | "qlora" | "prompt_tuning" | "dpo" | "ppo" | "grpo" | ...,
      "runner": "generate" | "pooling",
      "task": "embed" | "classify",
      "base_model": {"identity": "sha256:...", "path": "/abs/path/at/training/time"},
      "prompt_template": {"name": "alpaca", "template": "### Instruction:\\n{prompt}\\n\\n### Response:\\n"},
      "data": {"sha256": "...", "examples": 1234},
      "hyperparameters": {...},
      "evaluation": {...},
      "created": "2026-11-21T12:00:00Z"
    }

`prompt_template.template` has one `{prompt}` placeholder; a request that sets the extension
field `use_adapter_template` gets its prompt (or last user message) wrapped in it.

`runner` is the engine runner the adapter was trained for (the server's --runner); absent, it is
`generate`, which every adapter published before pooling existed was. `task`, for `pooling`
adapters, is what the pooler does with it: `embed` or `classify` (the server's model must do the
same). A server refuses an adapter for another runner or task: its weights would load, but it
would answer something it was never trained to.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

FORMAT = 1
QUANTIZATION_LINEAGE_FILE = "quantization.json"
"""Beside a quantized model's config.json: its scheme and the identity of the model it came from."""
RUNNERS = ("generate", "pooling")
_CHUNK = 8 << 20


def base_model_identity(model_dir: str | Path) -> str:
    """sha256 over the model's config and every safetensors file, names included.

    Content, not paths or dates: a copied model keeps its identity, a retrained one does not.
    Reads all weights once (seconds for a few GB); the server does it at start-up.
    """
    model_dir = Path(model_dir)
    digest = hashlib.sha256()
    files = [model_dir / "config.json", *sorted(model_dir.glob("*.safetensors"))]
    for path in files:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def quantized_from_identity(model_dir: str | Path) -> str | None:
    """Identity of the model `model_dir` was quantized from (its `quantization.json`, written by
    `python -m training quantize`), or None. Adapters trained on that model serve on this one."""
    path = Path(model_dir, QUANTIZATION_LINEAGE_FILE)
    try:
        identity = json.loads(path.read_text())["quantized_from"]["identity"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return identity if isinstance(identity, str) else None


def mismatch(manifest: dict, identity: str | Sequence[str], runner: str = "generate",
             task: str | None = None) -> str | None:
    """Why an adapter with this manifest cannot run on the base model `identity` (or any of the
    identities it is known by: itself, and the model it was quantized from) with the engine
    runner `runner` (and pooling task `task`), or None."""
    if manifest.get("format") != FORMAT:
        return f"manifest.json format {manifest.get('format')!r} is not {FORMAT}"
    expected = (manifest.get("base_model") or {}).get("identity")
    if not isinstance(expected, str):
        return "manifest.json lacks base_model.identity"
    identities = (identity,) if isinstance(identity, str) else tuple(identity)
    if expected not in identities:
        return (f"it was trained on a different base model (manifest: {expected[:19]}..., "
                f"served: {identities[0][:19]}...)")
    stated = manifest.get("runner")
    wanted = stated or "generate"
    if wanted not in RUNNERS:
        return f"manifest.json runner {wanted!r} is not one of {', '.join(RUNNERS)}"
    if wanted != runner:
        source = "manifest.json runner" if stated else "manifest.json names no runner"
        return (f"it was trained for the {wanted} runner ({source}) and this server runs "
                f"--runner {runner}; serve it from a server started with --runner {wanted}")
    wanted_task = manifest.get("task")
    if runner == "pooling" and wanted_task is not None and wanted_task != task:
        return (f"it was trained for {wanted_task} (manifest.json task) and this server's model "
                f"does {task}; serve it from a server started with --convert {wanted_task}")
    template = (manifest.get("prompt_template") or {}).get("template")
    if template is not None and (not isinstance(template, str) or "{prompt}" not in template):
        return "manifest.json prompt_template.template must be a string with a {prompt} placeholder"
    return None


def write_manifest(adapter_dir: str | Path, manifest: dict) -> None:
    Path(adapter_dir, "manifest.json").write_text(json.dumps({"format": FORMAT, **manifest},
                                                             indent=2, sort_keys=True))
