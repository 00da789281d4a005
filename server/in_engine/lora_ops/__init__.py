"""Faster multi-LoRA ops for vLLM's CPU path: grouped by adapter, no per-token weight copies.

    grouped.py  the math (dense and grouped shrink/expand), checked against vLLM's torch ops
    punica.py   vLLM's CPU punica wrapper using it
    install.py  points the CPU platform at that wrapper (from server.in_engine.plugin)
    bench.py    micro-benchmark: python -m server.in_engine.lora_ops.bench
"""
