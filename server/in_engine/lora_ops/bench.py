"""Micro-benchmark: vLLM's CPU LoRA ops vs ours, on the bench model's layer sizes.

    .venv/bin/python -m server.in_engine.lora_ops.bench                 # markdown table, ~1-2 min
    .venv/bin/python -m server.in_engine.lora_ops.bench --tokens 16,256 --reps 3

One "step" is what one engine step spends in LoRA for the whole bench model: the per-step
metadata update, then `add_lora_linear` of every LoRA'd module (qkv, o, gate_up, down) of all
8 layers, through the real punica wrappers (`PunicaWrapperCPU` vs `GroupedPunicaWrapperCPU`).
"base" is the same step's base-layer matmuls (x @ W^T, bf16), for scale. Tokens belong to
min(T, 16) requests of equal length; "8 mixed" gives request j adapter j % 8. Times are the best of
--reps samples, in milliseconds; other load on the machine still makes them noisy, compare
within a row. vLLM's CPU worker runs on one OpenMP thread on a 2-core machine: --threads 1.
"""

from __future__ import annotations

import argparse
import time

import torch
from vllm.lora.layers import LoRAMapping
from vllm.lora.punica_wrapper.punica_cpu import PunicaWrapperCPU

from server.in_engine.lora_ops import grouped, native
from server.in_engine.lora_ops.punica import GroupedPunicaWrapperCPU

HIDDEN, INTERMEDIATE, RANK, LAYERS, SLOTS, HEADS_OUT = 512, 1408, 16, 8, 8, 512
# (input size, output slices) of each LoRA'd module of a Llama layer.
MODULES = ((HIDDEN, (HEADS_OUT,) * 3), (HEADS_OUT, (HIDDEN,)), (HIDDEN, (INTERMEDIATE,) * 2),
           (INTERMEDIATE, (HIDDEN,)))
WORKLOADS = ("8 mixed", "1 adapter", "no adapter")


def make_layers(dtype=torch.bfloat16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    layers = []
    for _ in range(LAYERS):
        mods = []
        for size_in, slices in MODULES:
            a = tuple(torch.randn(SLOTS, 1, RANK, size_in, generator=g).to(dtype) * 0.05 for _ in slices)
            b = tuple(torch.randn(SLOTS, 1, s, RANK, generator=g).to(dtype) * 0.05 for s in slices)
            w = (torch.randn(sum(slices), size_in, generator=g) * 0.05).to(dtype)
            mods.append((size_in, slices, a, b, w))
        layers.append(mods)
    return layers


def mapping(tokens: int, workload: str) -> LoRAMapping:
    requests = min(tokens, 16)
    lengths = [tokens // requests + (j < tokens % requests) for j in range(requests)]
    ids = [(j % SLOTS) + 1 if workload == "8 mixed" else 1 if workload == "1 adapter" else 0
           for j in range(requests)]
    index = [i for i, n in zip(ids, lengths) for _ in range(n)]
    return LoRAMapping(tuple(index), tuple(ids), is_prefill=True)  # vLLM V1 on CPU: always True


def timed(fn, reps: int) -> float:
    fn()  # warm-up (and weight caches)
    n = 1
    while True:  # enough calls for ~50 ms per sample
        t = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t
        if dt > 0.05:
            break
        n *= 2
    samples = []
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - t) / n)
    return min(samples) * 1e3  # best sample: the least disturbed by the machine's other load


# Each form forced (ours picks per step: the kernel, and the grouped form for big adapters).
FORMS = {
    "kernel only": {(grouped, "GROUPED_MIN_TOKENS"): 1 << 62},
    "torch dense": {(native, "supports"): lambda dtype: False, (grouped, "DENSE_MAX_ROWS"): 1 << 62},
    "torch grouped": {(native, "supports"): lambda dtype: False, (grouped, "DENSE_MAX_ROWS"): 0},
}


def timed_with(knobs: dict, fn, reps: int) -> float:
    saved = {key: getattr(*key) for key in knobs}
    try:
        for (module, name), value in knobs.items():
            setattr(module, name, value)
        return timed(fn, reps)
    finally:
        for (module, name), value in saved.items():
            setattr(module, name, value)


def step_fn(wrapper, layers, xs, ys, lora_mapping):
    index_to_id = list(range(1, SLOTS + 1))

    def step():
        wrapper.update_metadata(lora_mapping, index_to_id, SLOTS + 1, 512)
        for mods in layers:
            for (size_in, slices, a, b, _), x, y in zip(mods, xs, ys):
                wrapper.add_lora_linear(y, x, a, b, 1.0, slices)
    return step


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m server.in_engine.lora_ops.bench",
                                description=__doc__.split("\n")[0])
    p.add_argument("--tokens", default="1,16,64,256,1024")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--forms", action="store_true", help="also time each form forced (kernel, torch dense, torch grouped)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    layers = make_layers()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; ms per model step "
          f"({LAYERS} layers x qkv/o/gate_up/down, rank {RANK}, hidden {HIDDEN}, intermediate {INTERMEDIATE})\n")
    head = "| tokens | adapters | vLLM ops | ours | speedup | base matmuls |"
    sep = "| ---: | --- | ---: | ---: | ---: | ---: |"
    if args.forms:
        head += "".join(f" {name} |" for name in FORMS)
        sep += " ---: |" * len(FORMS)
    print(head)
    print(sep)
    for tokens in [int(t) for t in args.tokens.split(",")]:
        g = torch.Generator().manual_seed(tokens)
        xs = [torch.randn(tokens, size_in, generator=g).to(torch.bfloat16) for size_in, *_ in layers[0]]
        ys = [torch.zeros(tokens, sum(slices), dtype=torch.bfloat16) for _, slices, *_ in layers[0]]
        base = timed(lambda: [x @ m[4].T for mods in layers for m, x in zip(mods, xs)], args.reps)
        for workload in WORKLOADS:
            m = mapping(tokens, workload)
            ref = PunicaWrapperCPU(max(tokens, 8192), 256, "cpu")
            ours = GroupedPunicaWrapperCPU(max(tokens, 8192), 256, "cpu")
            t_ref = timed(step_fn(ref, layers, xs, ys, m), args.reps)
            t_ours = timed(step_fn(ours, layers, xs, ys, m), args.reps)
            row = f"| {tokens} | {workload} | {t_ref:.3f} | {t_ours:.3f} | {t_ref / t_ours:.1f}x | {base:.3f} |"
            if args.forms:
                for name, knobs in FORMS.items():
                    row += f" {timed_with(knobs, step_fn(ours, layers, xs, ys, m), args.reps):.3f} |"
            print(row, flush=True)


if __name__ == "__main__":
    main()
