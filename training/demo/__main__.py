"""Build the demo base model and its adapters once (cached), for `make serve`.

    python -m training.demo build --out .demo --adapters adapters

The base model goes to OUT/base; the demo adapters are published into the adapters directory.
A stamp file records what was built, so a second run is instant.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from training.tiny import build_base_model, build_lora_adapter, build_prompt_tuning_adapter

# Bump when the demo's recipe changes, so cached builds are redone.
DEMO_VERSION = "1-random-init"

ADAPTERS = {
    "demo-lora-a": lambda base, out: build_lora_adapter(base, out, rank=8, seed=1),
    "demo-lora-b": lambda base, out: build_lora_adapter(base, out, rank=16, seed=2),
    "demo-soft-prompt": lambda base, out: build_prompt_tuning_adapter(
        base, out, num_virtual_tokens=8, seed=3),
}


def build(out: Path, adapters: Path) -> None:
    stamp = out / "demo.json"
    if stamp.exists() and json.loads(stamp.read_text()).get("version") == DEMO_VERSION and all(
        (adapters / name / "adapter_config.json").exists() for name in ADAPTERS
    ):
        print(f"demo is up to date in {out} and {adapters}")
        return
    shutil.rmtree(out, ignore_errors=True)
    base = build_base_model(out / "base", spec="demo", dtype="bfloat16")
    adapters.mkdir(parents=True, exist_ok=True)
    for name, make in ADAPTERS.items():
        # Build beside the target, then rename: a running server never sees half an adapter.
        tmp = adapters / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        make(base, tmp)
        shutil.rmtree(adapters / name, ignore_errors=True)
        tmp.rename(adapters / name)
    stamp.write_text(json.dumps({"version": DEMO_VERSION, "adapters": sorted(ADAPTERS)}))
    print(f"demo built: base model in {out / 'base'}, adapters {sorted(ADAPTERS)} in {adapters}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m training.demo")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the demo model and adapters (cached)")
    b.add_argument("--out", type=Path, default=Path(".demo"), help="where the base model goes")
    b.add_argument("--adapters", type=Path, default=Path("adapters"), help="adapters directory")
    args = parser.parse_args()
    build(args.out, args.adapters)


if __name__ == "__main__":
    main()
