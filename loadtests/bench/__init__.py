"""Side-by-side benchmark: this server, stock vLLM's OpenAI server, and transformers+PEFT.

    .venv/bin/python -m loadtests.bench --quick            # ~10 min: concurrency 1 and 16
    .venv/bin/python -m loadtests.bench                    # full grid: concurrency 1, 4, 16, 32

See loadtests/bench/__main__.py for the options, loadtests/RESULTS.md for the latest table.
"""
