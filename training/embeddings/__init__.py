"""Embedding adapters for the pooling server: contrastive LoRA training and retrieval evaluation.

    python -m training contrastive --config training/recipes/contrastive-demo.yaml [--publish]

    data.py          (anchor, positive[, negative]) JSONL -> token ids; synthetic paraphrase pairs
    contrastive.py   options, InfoNCE with in-batch negatives, the training run
    retrieval.py     the served embedding (last token, L2-normalised); recall@k / MRR, base vs adapter
"""
