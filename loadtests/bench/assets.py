"""The benchmark's model and adapters, built once and reused: every contender serves these files.

Layout under `root`:
    base/                 ~26M-param Llama (training.tiny spec "bench"), bfloat16
    adapters/lora-0..7/   rank-16 LoRA on all linear layers (seeds 1..8)
    adapters/soft-0/      prompt tuning, 16 virtual tokens
    more-loras/lora-8..N-1/  the `lora-N` workloads' extra rank-16 LoRAs (seeds 9..N), built on
                          first use by ensure_many_loras(), outside adapters/ so that the other
                          workloads and contenders (hf-peft loads every adapter of its folder)
                          see the same 8 LoRAs as before
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
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

    @property
    def more_loras(self) -> Path:
        """The folder of the extra LoRAs (lora-8 and up) of ensure_many_loras()."""
        return self.root / "more-loras"

    def lora_path(self, name: str) -> Path:
        """Where LoRA `name` (lora-<i>) lies: adapters/ for the first NUM_LORAS, more-loras/ after."""
        return (self.adapters if name in self.loras else self.more_loras) / name


def lora_names(n: int) -> list[str]:
    """lora-0 .. lora-<n-1>: the first NUM_LORAS are the assets' own, the rest ensure_many_loras()'s."""
    return [f"lora-{i}" for i in range(n)]


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


def _is_built(adapter: Path) -> bool:
    return (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()


def ensure_many_loras(assets: BenchAssets, n: int) -> list[str]:
    """Names of `n` rank-16 LoRAs (lora-0 .. lora-<n-1>); builds the missing extra ones (lora-8
    and up, seed i + 1 as the first eight, so all distinct) into assets.more_loras. Each is built
    in a hidden staging folder and renamed into place, so an interrupted build leaves no half
    adapter that a later run would take as finished. Needs ensure_assets() first (the base)."""
    names = lora_names(n)
    missing = [name for name in names[NUM_LORAS:] if not _is_built(assets.lora_path(name))]
    if missing:
        from training.tiny import build_lora_adapter

        assets.more_loras.mkdir(parents=True, exist_ok=True)
        for name in missing:
            seed = int(name.rsplit("-", 1)[1]) + 1
            staging = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=assets.more_loras))
            try:
                build_lora_adapter(assets.base, staging, rank=LORA_RANK, seed=seed)
                target = assets.lora_path(name)
                if target.exists():  # a half build from before this staging scheme: replace it
                    shutil.rmtree(target)
                os.rename(staging, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return names
