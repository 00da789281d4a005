"""What the server and training both speak: formats on disk and the rules on them.

`server` (the API process) and `training` each import this package and never each other, so a
serving-only install carries no training dependency and the two sides cannot drift apart. It
depends on the standard library, numpy and safetensors only (tests/test_import_graph.py).

    manifest.py      the adapter manifest (manifest.json): read/write, base model identity,
                     quantization lineage, "does this adapter fit this server's base and runner"
    paths.py         adapter names, the files of an adapter, confinement to the adapters directory
    servable.py      "can the server load this adapter": the LoRA config and weight rules the
                     server applies at load time and training applies before and after training
    rows.py          BadRow: a malformed data row, named by file:line
    preferences.py   preference rows (pair, ranking, judged tie) -> pairs; the server's feedback
                     page checks every row it writes with the reader training uses
    ratings.py       Bradley-Terry (Elo scale) leaderboard from pairwise judgements
    cli_args.py      a config dataclass -> argparse flags, field docstrings as help
"""
