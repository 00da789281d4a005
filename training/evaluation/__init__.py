"""Evaluation beyond base-vs-tuned (the `eval` command itself is training/evaluate.py):

    shots.py    few-shot prompts of the base, the in-context-learning baseline (`eval --shots`)
    served.py   greedy answers from a running server with the openai client (`eval --server`)
    judges.py   pairwise verdicts on two answers: task metric, reward model, or a served judge
    elo.py      the `elo` command: answers of the base and adapters, judged pairwise, rated
"""
