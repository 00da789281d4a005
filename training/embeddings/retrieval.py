"""Retrieval evaluation: each test anchor retrieves among all test positives by cosine, base vs adapter.

    result = compare(base, RUN/adapter, splits.test, pad_id)
    # {"retrieval": {"base": {"recall@1": ..., "mrr": ...}, "adapter": {...}}, "queries": Q, "candidates": C}
    print(table(result, trainable=..., seconds=...))

The embedding is the one the server serves for `--runner pooling --convert embed`: the last
token's final hidden state (after the model's last norm), L2-normalised (tests/oracle.py
`embedding`). `embed` is also what training.embeddings.train optimises.
"""

from __future__ import annotations

from pathlib import Path

import torch
from peft import PeftModel

from training.embeddings.data import Pair
from training.evaluation.held_out import load_tuned

KS = (1, 5, 10)


def backbone(model: torch.nn.Module) -> torch.nn.Module:
    """The decoder stack under the LM head (LlamaModel for Llama), LoRA layers included: its
    last_hidden_state is after the final norm, which is what vLLM's pooler reads."""
    if isinstance(model, PeftModel):
        model = model.get_base_model()  # LoRA is injected into the wrapped model's own layers
    return model.base_model


def embed(model: torch.nn.Module, ids: list[list[int]], pad_id: int) -> torch.Tensor:
    """[N, H] L2-normalised last-token states of one right-padded batch (gradients flow).

    Right padding leaves every real token's state as in an unpadded run (causal attention, the
    pads masked, positions from 0), so row i is the state at its own last token, len(ids[i]) - 1."""
    width = max(map(len, ids))
    device = next(model.parameters()).device
    input_ids = torch.tensor([row + [pad_id] * (width - len(row)) for row in ids], device=device)  # [N, T]
    lengths = torch.tensor([len(row) for row in ids], device=device)
    mask = (torch.arange(width, device=device)[None] < lengths[:, None]).long()  # [N, T]
    hidden = backbone(model)(input_ids=input_ids, attention_mask=mask).last_hidden_state  # [N, T, H]
    last = hidden[torch.arange(len(ids), device=device), lengths - 1]  # [N, H]
    return torch.nn.functional.normalize(last.float(), dim=-1)


@torch.no_grad()
def embed_all(model: torch.nn.Module, ids: list[list[int]], pad_id: int, batch_size: int = 64) -> torch.Tensor:
    """[N, H] embeddings of many texts, in batches, in eval mode."""
    model.eval()
    return torch.cat([embed(model, ids[i:i + batch_size], pad_id) for i in range(0, len(ids), batch_size)])


def retrieval_metrics(similarity: torch.Tensor, ks: tuple[int, ...] = KS) -> dict[str, float]:
    """recall@k and MRR for a [Q, C] similarity matrix whose query i's one relevant candidate is i.

    A query's rank is the number of candidates scoring at least as high as its own, itself
    included: ties count against it, so a model that embeds everything alike ranks every query last
    (as sklearn's label_ranking_average_precision_score ranks). recall@k: fraction of queries
    ranked <= k; MRR: mean of 1 / rank."""
    own = similarity.diagonal()[:, None]  # [Q, 1]
    ranks = (similarity >= own).sum(dim=1).float()  # [Q]
    metrics = {f"recall@{k}": round((ranks <= k).float().mean().item(), 4) for k in ks}
    metrics["mrr"] = round((1 / ranks).mean().item(), 4)
    return metrics


def compare(base: str | Path, adapter: str | Path, pairs: list[Pair], pad_id: int, ks: tuple[int, ...] = KS) -> dict:
    """Anchors retrieve positives with the base and with the adapter; the layout of
    training.evaluation.held_out.compare (set -> side -> metrics), which publish copies into the manifest."""
    result: dict = {"retrieval": {}}
    for side, path in (("base", None), ("adapter", adapter)):
        model = load_tuned(base, path)  # float32, both sides
        anchors = embed_all(model, [p.anchor for p in pairs], pad_id)  # [Q, H]
        positives = embed_all(model, [p.positive for p in pairs], pad_id)  # [C, H], C = Q
        result["retrieval"][side] = retrieval_metrics(anchors @ positives.T, ks)  # cosine: both sides normalised
        del model
    result.update(queries=len(pairs), candidates=len(pairs))
    return result


def table(result: dict, trainable: int, seconds: float) -> str:
    """Markdown: recall@k and MRR of base and adapter, with the adapter's size and training time."""
    sides = result["retrieval"]
    names = list(sides["base"])
    lines = [f"| model | {' | '.join(names)} | trainable parameters | training seconds |",
             "| --- | " + "--- | " * len(names) + "--- | --- |"]
    for side, params, secs in (("base", "0", "-"), ("adapter", f"{trainable:,}", f"{seconds:.1f}")):
        cells = " | ".join(f"{sides[side][m]:.3f}" for m in names)
        lines.append(f"| {side} | {cells} | {params} | {secs} |")
    return "\n".join(lines) + f"\n\n{result['queries']} queries, each among {result['candidates']} candidates."
