"""Validate a PEFT LoRA adapter against the base model and the engine's limits.

Everything vLLM would choke on is caught here, with a reason a person can act on, so that a
bad adapter becomes a 400 for the request that names it instead of an engine failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from safetensors import safe_open

from server.adapters.base_model import BaseModelInfo

_PEFT_PREFIX = "base_model.model."


class AdapterInvalid(ValueError):
    """The adapter can never be served as it is (the client's mistake, a 4xx)."""


@dataclass(frozen=True)
class LoraSpec:
    rank: int
    alpha: float
    target_modules: tuple[str, ...]


def _module_and_part(key: str) -> tuple[str, str]:
    # base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight
    #   -> ("model.layers.0.self_attn.q_proj", "lora_A")
    if not key.startswith(_PEFT_PREFIX) or not key.endswith(".weight"):
        raise AdapterInvalid(f"unexpected tensor {key!r} (not a PEFT LoRA weight)")
    module, _, part = key[len(_PEFT_PREFIX): -len(".weight")].rpartition(".")
    if part not in ("lora_A", "lora_B"):
        raise AdapterInvalid(
            f"tensor {key!r} is not a LoRA A/B matrix; only LoRA on linear layers is servable"
        )
    return module, part


def validate_lora(
    config: dict, weights: Path, base: BaseModelInfo, max_rank: int
) -> LoraSpec:
    rank = config.get("r")
    if not isinstance(rank, int) or rank < 1:
        raise AdapterInvalid(f"adapter_config.json has no valid rank `r` (got {rank!r})")
    ranks = {rank, *(config.get("rank_pattern") or {}).values()}
    if max(ranks) > max_rank:
        raise AdapterInvalid(f"LoRA rank {max(ranks)} is above the server's --max-lora-rank {max_rank}")
    if config.get("use_dora"):
        raise AdapterInvalid("DoRA adapters (use_dora) are not supported by the engine")
    if config.get("modules_to_save"):
        raise AdapterInvalid(
            f"modules_to_save {config['modules_to_save']} is not supported: the adapter would "
            "replace whole base-model modules; retrain without modules_to_save"
        )
    if config.get("bias", "none") != "none":
        raise AdapterInvalid(f"LoRA bias={config['bias']!r} is not supported; use bias='none'")

    try:
        with safe_open(weights, framework="pt") as f:
            shapes = {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    except Exception as exc:  # safetensors raises several types for corrupt files
        raise AdapterInvalid(f"{weights.name} is not a readable safetensors file ({exc})") from exc
    if not shapes:
        raise AdapterInvalid(f"{weights.name} holds no tensors")

    found: dict[str, dict[str, tuple[int, ...]]] = {}
    for key, shape in shapes.items():
        module, part = _module_and_part(key)
        found.setdefault(module, {})[part] = shape

    for module, parts in sorted(found.items()):
        if set(parts) != {"lora_A", "lora_B"}:
            raise AdapterInvalid(f"module {module} has {sorted(parts)} but needs lora_A and lora_B")
        if module not in base.linear_shapes:
            raise AdapterInvalid(f"target module {module} is not a linear layer of the base model")
        in_features, out_features = base.linear_shapes[module]
        a, b = parts["lora_A"], parts["lora_B"]
        r = a[0] if len(a) == 2 else None
        if r is None or r > max_rank or a != (r, in_features) or b != (out_features, r):
            raise AdapterInvalid(
                f"shapes of {module} do not fit the base model: lora_A {list(a)}, lora_B {list(b)}; "
                f"expected [r, {in_features}] and [{out_features}, r] with r <= {max_rank}"
            )

    targets = tuple(sorted({m.rpartition(".")[2] for m in found}))
    return LoraSpec(rank=rank, alpha=float(config.get("lora_alpha", rank)), target_modules=targets)
