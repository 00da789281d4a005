"""Can the server load this adapter: the rules, one implementation for both sides.

The server applies them to every adapter a request names (server/adapters/registry.py), so that
a bad adapter becomes a 400 for that request, with a reason a person can act on, instead of an
engine failure. Training applies the same rules before training (a recipe whose result could not
be served is refused before any time is spent) and again before saving (a trainer may have changed
the config): training/methods, training/classification, training/rlhf.

Configs are adapter_config.json as a dict (training passes `PeftConfig.to_dict()`, the same dict
PEFT writes). The engine (vLLM's PEFTHelper) refuses DoRA, modules_to_save, bias != none and ranks
above --max-lora-rank on its own; checking here first gives the reason before any file reaches
the engine, and training the same reason before it trains.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from safetensors import safe_open

_PEFT_PREFIX = "base_model.model."

LORA = "LORA"
SOFT_PROMPT_TYPES = ("PROMPT_TUNING", "P_TUNING")
"""Soft prompts the server passes to the engine as input embeddings (generate runner only)."""
LINEAR_TYPES = ("Linear", "Linear4bit", "Linear8bitLt")
"""Class names of the layers LoRA can adapt for the server (bitsandbytes' in a QLoRA-loaded base)."""


class AdapterInvalid(ValueError):
    """The adapter can never be served as it is (the client's mistake, a 4xx)."""


@dataclass(frozen=True)
class LoraSpec:
    rank: int
    alpha: float
    target_modules: tuple[str, ...]


def peft_type(config: Mapping) -> str:
    """`peft_type` of an adapter config, upper case ("" if missing); PEFT's enum or its JSON string."""
    kind = config.get("peft_type")
    return str(getattr(kind, "value", kind) or "").upper()


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def lora_config_problems(config: Mapping, max_rank: int) -> list[str]:
    """Reasons the server would refuse a LoRA with this config, before looking at its weights."""
    rank = config.get("r")
    if not _positive_int(rank):
        return [f"adapter_config.json has no valid rank `r` (got {rank!r})"]
    pattern = config.get("rank_pattern") or {}
    bad = {key: r for key, r in pattern.items() if not _positive_int(r)}
    if bad:
        return [f"adapter_config.json rank_pattern has ranks that are not positive integers: {bad}"]
    reasons = []
    highest = max([rank, *pattern.values()])
    if highest > max_rank:
        reasons.append(f"LoRA rank {highest} is above the server's --max-lora-rank {max_rank}")
    if config.get("use_dora"):
        reasons.append("DoRA adapters (use_dora) are not supported by the engine")
    if saved := config.get("modules_to_save"):
        saved = sorted(saved) if isinstance(saved, (list, tuple, set, frozenset)) else saved
        reasons.append(f"modules_to_save {saved} is not supported: the adapter would replace whole "
                       "base-model modules; retrain without modules_to_save")
    if config.get("bias", "none") != "none":
        reasons.append(f"LoRA bias={config['bias']!r} is not supported; use bias='none'")
    if config.get("trainable_token_indices"):
        reasons.append("trainable_token_indices (new token embeddings) are not servable")
    return reasons


def soft_prompt_config_problems(config: Mapping) -> list[str]:
    """Reasons the server would refuse a soft prompt (prompt tuning, P-tuning) with this config."""
    kind = peft_type(config)
    if kind == "PREFIX_TUNING":
        return ["prefix tuning puts learned key/values into every layer, which cannot be passed "
                "to the engine as input embeddings; retrain it as prompt tuning (PROMPT_TUNING)"]
    if kind not in SOFT_PROMPT_TYPES:
        return [f"peft_type {kind or '(missing)'} is not a soft prompt ({', '.join(SOFT_PROMPT_TYPES)})"]
    if config.get("num_transformer_submodules", 1) not in (1, None):
        return ["soft prompts for encoder-decoder models are not supported"]
    return []


def config_problems(config: Mapping, max_lora_rank: int) -> list[str]:
    """Reasons the server would refuse an adapter with this config whatever its weights (empty:
    servable by a server with this --max-lora-rank; soft prompts need --runner generate)."""
    kind = peft_type(config)
    if kind == LORA:
        return lora_config_problems(config, max_lora_rank)
    if kind in SOFT_PROMPT_TYPES or kind == "PREFIX_TUNING":
        return soft_prompt_config_problems(config)
    return [f"PEFT type {kind or '(missing)'} is not servable (LoRA or prompt tuning only)"]


def check_targets(targets: Sequence[str], modules: Mapping[str, str]) -> list[str]:
    """Reasons LoRA `targets` (module-name suffixes, or "all-linear") do not fit the base's linear
    layers; `modules`: module path -> class name, for every module of the base."""
    if list(targets) == ["all-linear"]:
        return []
    reasons = []
    for target in targets:
        hits = {path: kind for path, kind in modules.items() if path == target or path.endswith("." + target)}
        if not hits:
            reasons.append(f"target module {target!r} matches no module of the base model")
        elif any(kind not in LINEAR_TYPES for kind in hits.values()):
            kinds = sorted({k for k in hits.values() if k not in LINEAR_TYPES})
            reasons.append(f"target module {target!r} matches {kinds}, not linear layers; the server adapts only "
                           "linear layers")
    return reasons


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


def validate_lora(config: Mapping, weights: Path, linear_shapes: Mapping[str, tuple[int, int]],
                  max_rank: int) -> LoraSpec:
    """The LoRA's shape, or AdapterInvalid naming why the server cannot serve it.

    `linear_shapes`: the base model's linear layers, module path (e.g.
    `model.layers.0.self_attn.q_proj`) -> (in_features, out_features)."""
    problems = lora_config_problems(config, max_rank)
    if problems:
        raise AdapterInvalid("; ".join(problems))

    try:
        # Shapes from the header only; numpy, so that reading them needs no torch.
        with safe_open(weights, framework="numpy") as f:
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
        if module not in linear_shapes:
            raise AdapterInvalid(f"target module {module} is not a linear layer of the base model")
        in_features, out_features = linear_shapes[module]
        a, b = parts["lora_A"], parts["lora_B"]
        r = a[0] if len(a) == 2 else None
        if r is None or r > max_rank or a != (r, in_features) or b != (out_features, r):
            raise AdapterInvalid(
                f"shapes of {module} do not fit the base model: lora_A {list(a)}, lora_B {list(b)}; "
                f"expected [r, {in_features}] and [{out_features}, r] with r <= {max_rank}"
            )

    rank = config["r"]
    targets = tuple(sorted({m.rpartition(".")[2] for m in found}))
    return LoraSpec(rank=rank, alpha=float(config.get("lora_alpha", rank)), target_modules=targets)
