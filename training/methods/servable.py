"""What the server can load, checked on the trainer's side (mirrors server/adapters/lora.py).

The server refuses LoRA with DoRA, `modules_to_save`, bias != none, a rank above its
--max-lora-rank, or target modules that are not linear layers of the base; soft prompts must be
PEFT PROMPT_TUNING / P_TUNING. Refusing here, before training, saves the training time.
"""

from __future__ import annotations

from peft import PeftConfig

SERVABLE_PROMPT_TYPES = ("PROMPT_TUNING", "P_TUNING")
LINEAR_TYPES = ("Linear", "Linear4bit", "Linear8bitLt")


def check_peft_config(config: PeftConfig, max_lora_rank: int) -> list[str]:
    """Reasons the server would refuse an adapter with this PEFT config (empty: servable)."""
    kind = str(getattr(config.peft_type, "value", config.peft_type))
    reasons = []
    if kind == "LORA":
        ranks = {config.r, *(config.rank_pattern or {}).values()}
        if max(ranks) > max_lora_rank:
            reasons.append(f"LoRA rank {max(ranks)} is above the server's --max-lora-rank {max_lora_rank} "
                           "(raise output.max_lora_rank only if the server runs with a larger limit)")
        if config.use_dora:
            reasons.append("DoRA (use_dora) adapters are not supported by the serving engine")
        if config.modules_to_save:
            reasons.append(f"modules_to_save {sorted(config.modules_to_save)} would replace whole base modules, "
                           "which the serving engine cannot do")
        if config.bias != "none":
            reasons.append(f"LoRA bias={config.bias!r} is not servable; use bias: none")
        if getattr(config, "trainable_token_indices", None):
            reasons.append("trainable_token_indices (new token embeddings) are not servable")
    elif kind not in SERVABLE_PROMPT_TYPES:
        reasons.append(f"PEFT type {kind} is not servable (LoRA or prompt tuning only)")
    return reasons


def check_targets(targets: list[str], modules: dict[str, str]) -> list[str]:
    """Reasons LoRA `targets` (module-name suffixes, or "all-linear") do not fit the base's linear layers."""
    if targets == ["all-linear"]:
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
