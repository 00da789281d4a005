"""Fine-tune adapters the server can serve; evaluate and publish them.

    python -m training lora          --config training/recipes/lora-alpaca.yaml [--key value ...] [--publish]
    python -m training qlora         --config training/recipes/qlora-alpaca.yaml
    python -m training prompt_tuning --config training/recipes/prompt-tuning-chat.yaml
    python -m training full          --config training/recipes/full-alpaca.yaml
    python -m training selective     --config training/recipes/selective-last-layers.yaml
    python -m training eval          --base B --adapter A --data held_out.jsonl [--forgetting other.jsonl]
                                     [--shots 0,1,3 --shots-from train.jsonl] [--server URL]
    python -m training elo           --base B --adapters A1 A2 --data held_out.jsonl --judge metric|reward|server
    python -m training publish       --run runs/NAME [--name NAME] [--adapters-dir adapters]
    python -m training quantize      --model B --out B-w8a8 [--scheme W8A8|W4A16]  # a quantized base; same adapters
    python -m training reward        --config training/recipes/rlhf/reward-demo.yaml   (RLHF: training/rlhf/)
    python -m training ppo|dpo|grpo  --config training/recipes/rlhf/ppo-demo.yaml [--publish]
    python -m training rlhf-demo     [--out .demo/rlhf]   # preference data -> reward -> PPO/DPO/GRPO -> table
    python -m training contrastive   --config training/recipes/contrastive-demo.yaml [--publish]  # embedding LoRA
    python -m training classifier    --config training/recipes/classifier-head.yaml  # -last-layers, -full, -lora
    python -m training features      --base B --train train.jsonl --test test.jsonl [--pooling last|mean]
                                     [--classifier logistic|mlp] [--out DIR]   # frozen-LLM features + sklearn
    python -m training <command> --help     # every option, with its documentation
    torchrun --nproc-per-node N -m training <command> ...   # data-parallel on N processes (training/distributed.py;
                                                            # accelerate configs: training/accelerate/)

Recipes are YAML (training/recipes/); flags override them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence

from training.recipe import RecipeError, parse_command_line


def _methods() -> dict:
    from training.methods import METHODS

    return METHODS


def _train(name: str) -> Callable[[Sequence[str]], object]:
    def run(argv: Sequence[str]) -> object:
        from training.methods.common import train

        method = _methods()[name]
        recipe = parse_command_line(name, method.sections, argv, method.help)
        return train(recipe, method)
    return run


def _single(command: str, cls_path: str, fn_path: str) -> Callable[[Sequence[str]], object]:
    def run(argv: Sequence[str]) -> object:
        import importlib

        module = importlib.import_module(cls_path)
        cls, fn = getattr(module, fn_path[0]), getattr(module, fn_path[1])
        recipe = parse_command_line(command, {"args": cls}, argv, (cls.__doc__ or "").strip())
        return fn(recipe.args)
    return run


def _classifier(argv: Sequence[str]) -> object:
    from training.classification import train

    return train.train_classifier(parse_command_line("classifier", train.SECTIONS, argv, train.__doc__.strip()))


def _contrastive(argv: Sequence[str]) -> object:
    from training.embeddings import contrastive

    doc = (contrastive.__doc__ or "").strip()
    return contrastive.train_contrastive(parse_command_line("contrastive", contrastive.SECTIONS, argv, doc))


def _rlhf(name: str) -> Callable[[Sequence[str]], object]:
    def run(argv: Sequence[str]) -> object:
        from training.rlhf.commands import run_command_line

        return run_command_line(name, argv)
    return run


# One table: command -> what it runs.
COMMANDS: dict[str, tuple[str, Callable[[Sequence[str]], object]]] = {
    "lora": ("LoRA adapter", _train("lora")),
    "qlora": ("LoRA on a 4-bit NF4 quantized base (bitsandbytes)", _train("qlora")),
    "prompt_tuning": ("soft prompt (PEFT prompt tuning)", _train("prompt_tuning")),
    "full": ("full fine-tuning: a new model directory", _train("full")),
    "selective": ("train only the last N layers and/or output layers: a new model directory", _train("selective")),
    "eval": ("base vs tuned on held-out data", _single("eval", "training.evaluation.held_out", ("EvalConfig", "run_eval"))),
    "elo": ("Elo ratings of the base and adapters, judged pairwise",
            _single("elo", "training.evaluation.elo", ("EloConfig", "run_elo"))),
    "publish": ("publish a run's adapter into adapters/", _single("publish", "training.publish",
                                                                 ("PublishConfig", "run_publish"))),
    "quantize": ("a quantized copy of a base model that serves the same adapters (compressed-tensors)",
                 _single("quantize", "training.quantize", ("QuantizeConfig", "run_quantize"))),
    "reward": ("RLHF reward model from preference pairs", _rlhf("reward")),
    "ppo": ("RLHF PPO policy (LoRA) against a reward model", _rlhf("ppo")),
    "dpo": ("RLHF DPO policy (LoRA) from preference pairs", _rlhf("dpo")),
    "grpo": ("RLHF GRPO policy (LoRA) against a reward model", _rlhf("grpo")),
    "rlhf-demo": ("RLHF demo: preferences -> reward -> PPO/DPO/GRPO -> table",
                  _single("rlhf-demo", "training.rlhf.demo", ("DemoConfig", "run_demo"))),
    "classifier": ("sequence classifier: head / last layers (FT I), full (FT II) or LoRA", _classifier),
    "features": ("feature-based classifier: frozen-LLM embeddings + logistic regression / MLP",
                 _single("features", "training.classification.features", ("FeaturesConfig", "run_features"))),
    "contrastive": ("embedding LoRA (InfoNCE, in-batch negatives) for --runner pooling", _contrastive),
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__)
        print("commands:\n" + "\n".join(f"  {name:14} {help}" for name, (help, _) in COMMANDS.items()))
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from training.data import DataError
    from training.methods.common import Refused

    try:
        COMMANDS[argv[0]][1](argv[1:])
    except (RecipeError, DataError, Refused, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
