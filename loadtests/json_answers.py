"""What whitespace costs a JSON answer: the demo's JSON adapter with compact vs roomy grammars.

    .venv/bin/python -m loadtests.json_answers --url http://127.0.0.1:8000 [--whitespace 20,0] \
        [--examples 200] [--out loadtests/results/json-answers]

Against a running server on the demo model (`make serve`). For each `json_max_whitespace` value
(20: the server's default before; 1: the default now; 0: compact) every held-out example of
the demo's extraction task (.demo/data/extract-test.jsonl) is asked of `demo-extract-lora` (or
`--model`) with `response_format` json_schema (training.demo.tasks.EXTRACT_SCHEMA),
greedy, one request at a time: completion tokens, latency, how many answers parse and
validate, end in `stop` (not `length`), and equal the reference (json_match). Printed as a table
and written to report.md / report.json in --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import jsonschema
import openai

from training.demo.tasks import EXTRACT_SCHEMA

ADAPTER = "demo-extract-lora"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m loadtests.json_answers", description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--api-key", default="none")
    p.add_argument("--data", default=".demo/data/extract-test.jsonl")
    p.add_argument("--whitespace", default="20,1,0", help="json_max_whitespace values, compared in order")
    p.add_argument("--model", default=ADAPTER, help="the adapter asked (another one than the JSON adapter "
                   "shows what the grammar does to a model not trained for the task)")
    p.add_argument("--examples", type=int, default=200)
    p.add_argument("--max-tokens", type=int, default=96)
    p.add_argument("--out", default="loadtests/results/json-answers")
    return p.parse_args(argv)


def examples(path: Path, n: int) -> list[tuple[list[dict], dict]]:
    """(chat messages up to the answer, the reference answer) of the first `n` rows."""
    rows = []
    for line in path.read_text().splitlines()[:n]:
        messages = json.loads(line)["messages"]
        rows.append((messages[:-1], json.loads(messages[-1]["content"])))
    return rows


def run(client: openai.OpenAI, rows, whitespace: int, max_tokens: int, model: str = ADAPTER) -> dict:
    tokens, latencies, valid, stopped, exact = [], [], 0, 0, 0
    fmt = {"type": "json_schema", "json_schema": {"name": "review", "schema": EXTRACT_SCHEMA, "strict": True}}
    for messages, reference in rows:
        started = time.perf_counter()
        r = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=max_tokens,
                                           response_format=fmt, extra_body={"json_max_whitespace": whitespace})
        latencies.append(time.perf_counter() - started)
        tokens.append(r.usage.completion_tokens)
        choice = r.choices[0]
        stopped += choice.finish_reason == "stop"
        try:
            answer = json.loads(choice.message.content)
            jsonschema.validate(answer, EXTRACT_SCHEMA)
        except (ValueError, jsonschema.ValidationError):
            continue
        valid += 1
        exact += answer == reference
    n = len(rows)
    return {"json_max_whitespace": whitespace, "examples": n,
            "tokens_mean": statistics.mean(tokens), "tokens_max": max(tokens),
            "latency_mean_ms": 1000 * statistics.mean(latencies),
            "latency_median_ms": 1000 * statistics.median(latencies),
            "valid": valid / n, "stopped": stopped / n, "exact_match": exact / n}


def render(results: list[dict]) -> str:
    lines = ["| json_max_whitespace | examples | tokens (mean / max) | latency mean / median (ms) | "
             "parse + validate | finish stop | exact match |", "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['json_max_whitespace']} | {r['examples']} | {r['tokens_mean']:.1f} / {r['tokens_max']} | "
              f"{r['latency_mean_ms']:.0f} / {r['latency_median_ms']:.0f} | {r['valid']:.3f} | {r['stopped']:.3f} | "
              f"{r['exact_match']:.3f} |" for r in results]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    client = openai.OpenAI(base_url=args.url + "/v1", api_key=args.api_key, max_retries=0, timeout=120)
    rows = examples(Path(args.data), args.examples)
    run(client, rows[:5], 0, args.max_tokens, args.model)  # warm-up: grammar compilation, first requests
    results = [run(client, rows, int(w), args.max_tokens, args.model) for w in args.whitespace.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(results, indent=2))
    (out / "report.md").write_text(render(results))
    print(render(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
