"""Command line for the tiny builders.

Usage:
    python -m training.tiny base   --out /tmp/tiny/base [--spec test|demo|bench] [--dtype float32|bfloat16]
    python -m training.tiny lora   --base /tmp/tiny/base --out /tmp/tiny/lora-1 [--rank 8] [--seed 1]
    python -m training.tiny prompt --base /tmp/tiny/base --out /tmp/tiny/prompt-1 [--virtual-tokens 8] [--seed 1]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path


def _base(args: argparse.Namespace) -> Path:
    from training.tiny.model import build_base_model

    return build_base_model(args.out, spec=args.spec, dtype=args.dtype)


def _lora(args: argparse.Namespace) -> Path:
    from training.tiny.adapters import build_lora_adapter

    return build_lora_adapter(
        args.base, args.out, rank=args.rank, alpha=args.alpha or 2 * args.rank, seed=args.seed, init_scale=args.init_scale
    )


def _prompt(args: argparse.Namespace) -> Path:
    from training.tiny.adapters import build_prompt_tuning_adapter

    return build_prompt_tuning_adapter(
        args.base, args.out, num_virtual_tokens=args.virtual_tokens, seed=args.seed, init_text=args.init_text
    )


def parser() -> argparse.ArgumentParser:
    from training.tiny.model import DTYPES, SPECS

    p = argparse.ArgumentParser(prog="python -m training.tiny", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    base = sub.add_parser("base", help="build a random base model + tokenizer")
    base.add_argument("--out", required=True, help="output directory")
    base.add_argument("--spec", default="test", choices=sorted(SPECS), help="size preset (default: test)")
    base.add_argument("--dtype", default="float32", choices=sorted(DTYPES), help="weights dtype (default: float32)")
    base.set_defaults(run=_base)

    lora = sub.add_parser("lora", help="build a random LoRA adapter on all linear layers")
    lora.add_argument("--base", required=True, help="base model directory")
    lora.add_argument("--out", required=True, help="output directory")
    lora.add_argument("--rank", type=int, default=8, help="LoRA rank (vLLM: 1, 8, 16, 32, 64, ...; default 8)")
    lora.add_argument("--alpha", type=int, default=None, help="LoRA alpha (default: 2 * rank)")
    lora.add_argument("--seed", type=int, default=0, help="seed of the weights")
    lora.add_argument("--init-scale", type=float, default=0.2, help="std(ΔW) / std(W) per matrix (default 0.2)")
    lora.set_defaults(run=_lora)

    prompt = sub.add_parser("prompt", help="build a random prompt-tuning (soft prompt) adapter")
    prompt.add_argument("--base", required=True, help="base model directory")
    prompt.add_argument("--out", required=True, help="output directory")
    prompt.add_argument("--virtual-tokens", type=int, default=8, help="number of virtual tokens (default 8)")
    prompt.add_argument("--seed", type=int, default=0, help="seed of the embeddings")
    prompt.add_argument("--init-text", default=None, help="initialise from this text's token embeddings instead")
    prompt.set_defaults(run=_prompt)
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    from transformers.utils import logging

    logging.disable_progress_bar()  # "Loading weights" / "Writing model shards" bars for a 2 MB model are noise
    print(args.run(args))


if __name__ == "__main__":
    main()
