"""The benchmark's model and adapters, built once and reused: every contender serves these files.

The model is a random Llama of one of SHAPES (training.tiny specs): "bench" (~26M parameters,
the default) or "qwen2.5-0.5b" (Qwen2.5-0.5B's shapes, 494M parameters, ~1 GB in bfloat16,
each rank-16 LoRA 17.6 MB); each shape's assets live in a folder of their own.

Layout under `root`:
    base/                 the model (training.tiny spec = the shape), bfloat16
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

NUM_LORAS = 8
LORA_RANK = 16
# build_lora_adapter's defaults, which the bench LoRAs have always had: scaling alpha / r = 1 at
# rank 16, std(ΔW) = 0.2 std(W) per adapted matrix.
LORA_ALPHA = 16
LORA_INIT_SCALE = 0.2
NUM_VIRTUAL_TOKENS = 16
BASE_NAME = "base"  # = the model directory's name, which our server serves it as
VERSION = 1  # bump when the recipe below changes
DEFAULT_SHAPE = "bench"
SHAPES = (DEFAULT_SHAPE, "qwen2.5-0.5b")
"""The model shapes the bench runs on: training.tiny spec names (kept here, not read from SPECS,
so that a cached build imports no torch)."""


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

    @property
    def stamp(self) -> Path:
        """built.json: written last by ensure_assets() (recipe version, model shape, parameters)."""
        return self.root / "built.json"

    def built(self) -> dict:
        """What ensure_assets() recorded; builds from before --model-shape were of the bench shape."""
        return {"shape": DEFAULT_SHAPE, **json.loads(self.stamp.read_text())}


def lora_names(n: int) -> list[str]:
    """lora-0 .. lora-<n-1>: the first NUM_LORAS are the assets' own, the rest ensure_many_loras()'s."""
    return [f"lora-{i}" for i in range(n)]


def ensure_assets(root: str | Path, shape: str = DEFAULT_SHAPE) -> BenchAssets:
    """Build the model of `shape` and its adapters into `root` unless a finished build is already
    there; a finished build of another shape is refused (not overwritten: it may have cost minutes
    and gigabytes of LoRAs)."""
    if shape not in SHAPES:
        raise ValueError(f"unknown model shape {shape!r}; shapes: {', '.join(SHAPES)}")
    assets = BenchAssets(Path(root))
    if assets.stamp.exists() and assets.built().get("version") == VERSION:
        if assets.built()["shape"] != shape:
            raise ValueError(f"{assets.root} holds the assets of model shape {assets.built()['shape']!r}, "
                             f"not {shape!r}: give another --assets folder")
        return assets
    # Imported here: torch/transformers/peft cost seconds, and a cached build needs none of them.
    from training.tiny import build_base_model, build_prompt_tuning_adapter, count_parameters

    assets.root.mkdir(parents=True, exist_ok=True)
    build_base_model(assets.base, spec=shape, dtype="bfloat16")
    write_lora = lora_writer(assets.base)
    for i, name in enumerate(assets.loras):
        write_lora(assets.adapters / name, i + 1)
    build_prompt_tuning_adapter(assets.base, assets.adapters / assets.soft_prompt,
                                num_virtual_tokens=NUM_VIRTUAL_TOKENS, seed=100)
    assets.stamp.write_text(json.dumps({"version": VERSION, "shape": shape, "parameters": count_parameters(shape)}))
    return assets


def lora_writer(base_dir: str | Path, *, rank: int = LORA_RANK, alpha: int = LORA_ALPHA,
                init_scale: float = LORA_INIT_SCALE) -> Callable[[Path, int], Path]:
    """A function (out_dir, seed) -> out_dir that writes the LoRA that
    `training.tiny.build_lora_adapter(base_dir, out_dir, rank=rank, alpha=alpha, seed=seed,
    init_scale=init_scale)` writes, tensor for tensor, without loading the model per adapter.

    build_lora_adapter loads the base and wraps it with PEFT for every adapter: well under a
    second at the bench shape's 26M parameters, ~4 s at 0.5B, over an hour for a thousand.
    Here the work that does not depend on the seed is done once: the adapted layers (names,
    shapes, in the order PEFT visits them) come from the model built on the meta device from
    config.json (no weights), and the std of each adapted weight, which sets the scale of its
    A and B, from one read of the base's safetensors. An adapter is then only its random draws,
    from the same seeded generator in the same order as training.tiny's init_lora_weights, and
    a file write (~0.3-0.6 s at 0.5B on 2 cores). adapter_config.json is PEFT's own (its
    LoraConfig as build_lora_adapter sets it); PEFT's README.md model card, which no server
    reads, is left out.
    """
    import math

    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM

    from training.tiny.adapters import ALL_LINEAR, servable_lora_config

    base = Path(base_dir)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(base))
    # PEFT adapts the Linear modules whose name ends with a target (lm_head is none of them).
    layers = {name: module for name, module in model.named_modules()
              if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] in ALL_LINEAR}
    weights: dict[str, tuple[float, torch.dtype]] = {}  # std and dtype of each adapted weight
    for path in sorted(base.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                name = key.removesuffix(".weight")
                if name in layers:
                    w = f.get_tensor(key)
                    weights[name] = (w.float().std().item(), w.dtype)
    missing = layers.keys() - weights.keys()
    if missing:
        raise ValueError(f"{base}: no weights for {len(missing)} adapted layers, e.g. {sorted(missing)[0]}")
    scaling = alpha / rank  # PEFT's, without rsLoRA
    plan = []  # (tensor name prefix, A shape, B shape, factor std, dtype) in PEFT's module order
    for name, module in layers.items():
        std, dtype = weights[name]
        # As init_lora_weights: std(ΔW) = scaling * sqrt(r) * s² = init_scale * std(W).
        s = math.sqrt(init_scale * std / (scaling * math.sqrt(rank)))
        plan.append((f"base_model.model.{name}", (rank, module.in_features), (module.out_features, rank), s, dtype))
    config = servable_lora_config(rank, alpha, ALL_LINEAR)
    # As PEFT's save_pretrained and build_lora_adapter leave it: the base as given, inference
    # mode, the targets as a sorted list (PEFT keeps a set, whose JSON order varies per run).
    config.base_model_name_or_path = str(base_dir)
    config.inference_mode = True
    config.target_modules = sorted(config.target_modules)

    def write(out_dir: Path, seed: int) -> Path:
        generator = torch.Generator().manual_seed(seed)
        tensors = {}
        for prefix, a_shape, b_shape, s, dtype in plan:
            # Drawn in float32 and rounded to the base dtype, A then B: init_lora_weights' order.
            tensors[f"{prefix}.lora_A.weight"] = (torch.randn(a_shape, generator=generator) * s).to(dtype)
            tensors[f"{prefix}.lora_B.weight"] = (torch.randn(b_shape, generator=generator) * s).to(dtype)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
        config.save_pretrained(str(out))
        return out

    return write


def _is_built(adapter: Path) -> bool:
    return (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()


def ensure_many_loras(assets: BenchAssets, n: int) -> list[str]:
    """Names of `n` rank-16 LoRAs (lora-0 .. lora-<n-1>); builds the missing extra ones (lora-8
    and up, seed i + 1 as the first eight, so all distinct) into assets.more_loras, with
    lora_writer() (a thousand at the 0.5B shape: ~17.6 GB). Each is built in a hidden staging
    folder and renamed into place, so an interrupted build leaves no half adapter that a later
    run would take as finished. Needs ensure_assets() first (the base)."""
    names = lora_names(n)
    missing = [name for name in names[NUM_LORAS:] if not _is_built(assets.lora_path(name))]
    if missing:
        write_lora = lora_writer(assets.base)
        assets.more_loras.mkdir(parents=True, exist_ok=True)
        for name in missing:
            seed = int(name.rsplit("-", 1)[1]) + 1
            staging = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=assets.more_loras))
            try:
                write_lora(staging, seed)
                target = assets.lora_path(name)
                if target.exists():  # a half build from before this staging scheme: replace it
                    shutil.rmtree(target)
                os.rename(staging, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return names
