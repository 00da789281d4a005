"""Retrieval metrics against hand-computed values, and the batched embedding against the oracle."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import label_ranking_average_precision_score
from transformers import AutoTokenizer

from tests import oracle
from training.embeddings.retrieval import embed_all, retrieval_metrics, table
from training.evaluation.held_out import load_tuned


def test_recall_at_k_and_mrr_equal_the_hand_computed_values():
    # Query i's relevant candidate is i. Ranks: query 0 -> 1, 1 -> 3 (0.9 and 0.7 beat 0.5),
    # 2 -> 2 (0.8 beats 0.6), 3 -> 4 (a tie with its own 0.3 counts against it).
    similarity = torch.tensor([[0.9, 0.1, 0.2, 0.0],
                               [0.9, 0.5, 0.7, 0.1],
                               [0.8, 0.0, 0.6, 0.2],
                               [0.3, 0.4, 0.5, 0.3]])
    got = retrieval_metrics(similarity, ks=(1, 2, 3))
    assert got == {"recall@1": 0.25, "recall@2": 0.5, "recall@3": 0.75,
                   "mrr": round((1 + 1 / 3 + 1 / 2 + 1 / 4) / 4, 4)}
    # One relevant candidate per query: MRR is sklearn's label ranking average precision.
    assert got["mrr"] == pytest.approx(label_ranking_average_precision_score(np.eye(4), similarity.numpy()), abs=1e-4)


def test_table_shows_both_sides_with_size_and_time():
    result = {"retrieval": {"base": {"recall@1": 0.25, "mrr": 0.5}, "adapter": {"recall@1": 1.0, "mrr": 1.0}},
              "queries": 4, "candidates": 4}
    assert table(result, trainable=32768, seconds=12.34).splitlines()[:4] == [
        "| model | recall@1 | mrr | trainable parameters | training seconds |",
        "| --- | --- | --- | --- | --- |",
        "| base | 0.250 | 0.500 | 0 | - |",
        "| adapter | 1.000 | 1.000 | 32,768 | 12.3 |",
    ]


def test_padded_batch_embeddings_equal_the_oracle_one_by_one(tiny):
    tok = AutoTokenizer.from_pretrained(tiny["base"])
    ids = [tok(t).input_ids for t in ("The quick brown fox", "1 2 3 4 5 6 7 8 9", "x")]
    got = embed_all(load_tuned(tiny["base"], tiny["lora-a"]), ids, tok.pad_token_id)  # [3, H], right-padded
    assert got.shape == (3, 128)
    for vector, prompt in zip(got, ids):
        np.testing.assert_allclose(vector.numpy(), oracle.embedding(tiny["base"], prompt, tiny["lora-a"]),
                                   rtol=1e-5, atol=1e-6)
