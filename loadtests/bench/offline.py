"""The engine without a server: vLLM's engine in this process, the ceiling a server is held to.

    .venv/bin/python -m loadtests.bench.offline [--engine vllm|ours] [--streams 16] [--requests 96] [--rounds 3]

The bench model and prompts of `python -m loadtests.bench` (MAX_TOKENS greedy tokens each,
`ignore_eos`), at most `--streams` sequences at a time (`max_num_seqs`), so the batch is what a
closed loop of that many clients keeps running. `--engine vllm` (default): vLLM's `LLM` with the
engine options of the `ours` contender (the same KV cache and context, `--dtype`; no LoRA, which
only costs the engine). `--engine ours`: the engine exactly as the `ours` server builds it
(`server.engine.prepare_engine`: LoRA on, our vLLM plugin, the soft-prompt KV cache), so the gap
to the server is the server alone. vLLM runs its engine core in a process of its own unless
`VLLM_ENABLE_V1_MULTIPROCESSING=0`. Prints generated tokens per second (median of the rounds) as
one JSON line.
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


def measure(streams: int, requests: int, rounds: int, assets_dir: str, dtype: str = "bfloat16",
            engine_kind: str = "vllm") -> dict:
    from vllm import SamplingParams

    assets = ensure_assets(assets_dir)
    engine = _engine(engine_kind, assets, dtype, streams)
    params = SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS, ignore_eos=True)
    _generate(engine, [prompt(-1 - i) for i in range(streams)], params)  # warm-up
    rates = []
    for r in range(rounds):
        # Distinct prompts per round, as the bench's cells: no prefix-cache hits.
        batch = [prompt(1_000_000 * (r + 1) + i) for i in range(requests)]
        start = time.perf_counter()
        tokens = _generate(engine, batch, params)
        rates.append(tokens / (time.perf_counter() - start))
    return {"contender": f"offline-{engine_kind}", "streams": streams, "requests": requests,
            "tokens_per_s": round(statistics.median(rates), 1), "rounds": [round(x, 1) for x in rates]}


def _engine(kind: str, assets, dtype: str, streams: int):
    """vLLM's `LLMEngine`: `LLM`'s (kind "vllm") or the one the `ours` server runs ("ours")."""
    if kind == "vllm":
        from vllm import LLM

        return LLM(model=str(assets.base), dtype=dtype, max_model_len=MAX_MODEL_LEN,
                   kv_cache_memory_bytes=KV_CACHE_GIB * 2**30, max_num_seqs=streams,
                   seed=0).llm_engine
    from vllm.v1.engine.llm_engine import LLMEngine

    from server.config import ServerConfig
    from server.engine import prepare_engine

    config = ServerConfig(model=str(assets.base), adapters=str(assets.adapters), dtype=dtype,
                          kv_cache_gib=KV_CACHE_GIB, max_model_len=MAX_MODEL_LEN,
                          max_num_seqs=streams, max_lora_rank=16)
    return LLMEngine.from_vllm_config(prepare_engine(config), disable_log_stats=True)


def _generate(engine, prompts: list[str], params) -> int:
    """Run `prompts` to the end, as `LLM.generate` does; returns the tokens generated."""
    for i, text in enumerate(prompts):
        engine.add_request(f"offline-{i}", text, params)
    tokens = 0
    while engine.has_unfinished_requests():
        tokens += sum(len(out.outputs[0].token_ids) for out in engine.step() if out.finished)
    return tokens


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m loadtests.bench.offline", description=__doc__.split("\n")[0])
    p.add_argument("--engine", default="vllm", choices=("vllm", "ours"),
                   help="vLLM's LLM with the bench's options, or the engine the ours server builds")
    p.add_argument("--streams", type=int, default=16, help="sequences running at once (max_num_seqs)")
    p.add_argument("--requests", type=int, default=96, help="requests per round")
    p.add_argument("--rounds", type=int, default=3, help="rounds; the median is reported")
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"), help="as the bench's --dtype")
    p.add_argument("--assets", default=RESULTS_ASSETS, help="bench model + adapters (built if absent)")
    args = p.parse_args(argv)
    print(json.dumps(measure(args.streams, args.requests, args.rounds, args.assets, args.dtype, args.engine)), flush=True)


if __name__ == "__main__":
    main()
