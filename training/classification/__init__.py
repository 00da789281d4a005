"""Text classifiers on a base LLM, the approaches compared on one labelled data set:

    python -m training classifier --config training/recipes/classifier-head.yaml   # fine-tuning I / II, LoRA
    python -m training features --base B --train train.jsonl --test test.jsonl     # frozen features + sklearn

    data.py      JSONL rows {"text", "label"}: label set, splits, tokenization
    modes.py     what trains in each classifier.mode (head, last_layers, full, lora); refusals
    loading.py   the base as a classifier, or as a frozen backbone
    train.py     the `classifier` command: Trainer, RUN/model or RUN/adapter, run.json
    features.py  the `features` command: frozen-LLM embeddings + logistic regression / MLP
    metrics.py   accuracy, macro-F1, confusion matrix (scikit-learn) and the markdown table
"""
