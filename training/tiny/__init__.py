"""Deterministic, offline builders of small Llama models, tokenizers and test adapters.

Usage:
    from training.tiny import build_base_model, build_lora_adapter, build_prompt_tuning_adapter
    base = build_base_model("/tmp/tiny/base", spec="test")              # float32, ~0.4M params
    build_lora_adapter(base, "/tmp/tiny/lora-1", rank=8, seed=1)
    build_prompt_tuning_adapter(base, "/tmp/tiny/prompt-1", num_virtual_tokens=8, seed=1)
    build_tool_calling_lora(base, "/tmp/tiny/tool-lora")                # trained: calls get_weather

    python -m training.tiny base --out /tmp/tiny/base --spec test       # the same from a shell
"""

from training.tiny.adapters import build_lora_adapter, build_prompt_tuning_adapter
from training.tiny.corpus import instruction_pairs, tokenizer_corpus
from training.tiny.model import SPECS, TinyLlamaSpec, build_base_model, build_model, count_parameters
from training.tiny.tokenizer import CHAT_TEMPLATE, build_tokenizer
from training.tiny.tool_calls import build_tool_calling_lora

__all__ = [
    "CHAT_TEMPLATE",
    "SPECS",
    "TinyLlamaSpec",
    "build_base_model",
    "build_lora_adapter",
    "build_model",
    "build_prompt_tuning_adapter",
    "build_tokenizer",
    "build_tool_calling_lora",
    "count_parameters",
    "instruction_pairs",
    "tokenizer_corpus",
]
