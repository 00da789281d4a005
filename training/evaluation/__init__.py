"""Evaluation: base vs tuned on held-out data (held_out.py, the `eval` command), and beyond it:

    held_out.py base vs tuned: task metric, perplexity, forgetting (the `eval` command)
    shots.py    few-shot prompts of the base, the in-context-learning baseline (`eval --shots`)
    served.py   greedy answers from a running server with the openai client (`eval --server`)
    judges.py   pairwise verdicts on two answers: task metric, reward model, or a served judge
    elo.py      the `elo` command: answers of the base and adapters, judged pairwise, rated
"""
