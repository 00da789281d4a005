"""The engine without a server: vLLM's `LLM` in this process, the ceiling a server is held to.

    .venv/bin/python -m loadtests.bench.offline [--streams 16] [--requests 96] [--rounds 3]

The bench model and prompts of `python -m loadtests.bench` (MAX_TOKENS greedy tokens each,
`ignore_eos`), the engine options of the `ours` contender (bfloat16, the same KV cache and
context, `--dtype`; no LoRA, which only costs the engine), at most `--streams` sequences at a time
(`max_num_seqs`), so the batch is what a closed loop of that many clients keeps running.
Prints generated tokens per second (median of the rounds) as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from loadtests.bench.assets import ensure_assets
from loadtests.bench.ours import KV_CACHE_GIB, MAX_MODEL_LEN
from loadtests.bench.workloads import MAX_TOKENS, prompt

RESULTS_ASSETS = "loadtests/results/assets"


def measure(streams: int, requests: int, rounds: int, assets_dir: str, dtype: str = "bfloat16") -> dict:
    from vllm import LLM, SamplingParams

    assets = ensure_assets(assets_dir)
    llm = LLM(model=str(assets.base), dtype=dtype, max_model_len=MAX_MODEL_LEN,
              kv_cache_memory_bytes=KV_CACHE_GIB * 2**30, max_num_seqs=streams, seed=0)
    params = SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS, ignore_eos=True)
    llm.generate([prompt(-1 - i) for i in range(streams)], params, use_tqdm=False)  # warm-up
    rates = []
    for r in range(rounds):
        # Distinct prompts per round, as the bench's cells: no prefix-cache hits.
        batch = [prompt(1_000_000 * (r + 1) + i) for i in range(requests)]
        start = time.perf_counter()
        outputs = llm.generate(batch, params, use_tqdm=False)
        seconds = time.perf_counter() - start
        rates.append(sum(len(o.outputs[0].token_ids) for o in outputs) / seconds)
    return {"contender": "offline-llm", "streams": streams, "requests": requests,
            "tokens_per_s": round(statistics.median(rates), 1), "rounds": [round(x, 1) for x in rates]}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m loadtests.bench.offline", description=__doc__.split("\n")[0])
    p.add_argument("--streams", type=int, default=16, help="sequences running at once (max_num_seqs)")
    p.add_argument("--requests", type=int, default=96, help="requests per round")
    p.add_argument("--rounds", type=int, default=3, help="rounds; the median is reported")
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"), help="as the bench's --dtype")
    p.add_argument("--assets", default=RESULTS_ASSETS, help="bench model + adapters (built if absent)")
    args = p.parse_args(argv)
    print(json.dumps(measure(args.streams, args.requests, args.rounds, args.assets, args.dtype)), flush=True)


if __name__ == "__main__":
    main()
