"""The benchmark's model and adapters, built once and reused: every contender serves these files.

Layout under `root`:
    base/                 ~26M-param Llama (training.tiny spec "bench"), bfloat16
    adapters/lora-0..7/   rank-16 LoRA on all linear layers (seeds 1..8)
    adapters/soft-0/      prompt tuning, 16 virtual tokens
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

NUM_LORAS = 8
LORA_RANK = 16
NUM_VIRTUAL_TOKENS = 16
BASE_NAME = "base"  # = the model directory's name, which our server serves it as
VERSION = 1  # bump when the recipe below changes


@dataclass(frozen=True)
class BenchAssets:
    root: Path

    @property
    def base(self) -> Path:
        return self.root / BASE_NAME

    @property
    def adapters(self) -> Path:
        return self.root / "adapters"

    @property
    def loras(self) -> list[str]:
        return [f"lora-{i}" for i in range(NUM_LORAS)]

    @property
    def soft_prompt(self) -> str:
        return "soft-0"


def ensure_assets(root: str | Path) -> BenchAssets:
    """Build the bench model and adapters into `root` unless a finished build is already there."""
    assets = BenchAssets(Path(root))
    stamp = assets.root / "built.json"
    if stamp.exists() and json.loads(stamp.read_text()).get("version") == VERSION:
        return assets
    # Imported here: torch/transformers/peft cost seconds, and a cached build needs none of them.
    from training.tiny import build_base_model, build_lora_adapter, build_prompt_tuning_adapter, count_parameters

    assets.root.mkdir(parents=True, exist_ok=True)
    build_base_model(assets.base, spec="bench", dtype="bfloat16")
    for i, name in enumerate(assets.loras):
        build_lora_adapter(assets.base, assets.adapters / name, rank=LORA_RANK, seed=i + 1)
    build_prompt_tuning_adapter(assets.base, assets.adapters / assets.soft_prompt,
                                num_virtual_tokens=NUM_VIRTUAL_TOKENS, seed=100)
    stamp.write_text(json.dumps({"version": VERSION, "parameters": count_parameters("bench")}))
    return assets
