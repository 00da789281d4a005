"""The contrastive command: InfoNCE against hand-computed values, a few steps on the tiny base
(LoRA moves, the base does not, the loss falls), and a saved adapter the pooling server accepts."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from peft import get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from adapter_formats.manifest import base_model_identity, mismatch
from adapter_formats.servable import validate_lora
from server.adapters.base_model import BaseModelInfo
from tests import oracle
from tests.training.embeddings.conftest import contrastive_recipe
from training.__main__ import COMMANDS
from training.embeddings.contrastive import ContrastiveOptions, batch_loss, embedding_lora, info_nce
from training.embeddings.data import pair_from_row, paraphrase_pairs
from training.embeddings.retrieval import embed_all
from training.evaluation.held_out import load_tuned
from training.methods.common import Refused
from training.methods.lora import LoraOptions


def test_info_nce_equals_the_hand_computed_value():
    anchors = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    positives = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    # cosines: anchor 0 -> (1, 0.6), anchor 1 -> (0, 0.8); at τ = 0.5 the logits are twice that.
    want = (math.log(1 + math.exp(1.2 - 2.0)) + math.log(1 + math.exp(0.0 - 1.6))) / 2
    assert info_nce(anchors, positives, temperature=0.5).item() == pytest.approx(want, rel=1e-6)
    # A hard negative is one more candidate for every anchor: cosines 0.8 and 0.6 with (0.8, 0.6).
    negative = torch.tensor([[0.8, 0.6]])
    want = (-math.log(math.exp(2.0) / (math.exp(2.0) + math.exp(1.2) + math.exp(1.6)))
            - math.log(math.exp(1.6) / (math.exp(0.0) + math.exp(1.6) + math.exp(1.2)))) / 2
    assert info_nce(anchors, positives, negative, temperature=0.5).item() == pytest.approx(want, rel=1e-6)


def test_a_few_steps_on_a_fixed_batch_lower_the_loss_and_leave_the_base_alone(tiny):
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tiny["base"])
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny["base"]),
                           embedding_lora(LoraOptions(rank=8, alpha=16, dropout=0.0)))
    pairs = [pair_from_row(row, f"row {i}", tok, 64) for i, row in enumerate(paraphrase_pairs(8, seed=1))]
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trained = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert trained and all("lora_" in n for n in trained)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    opts = ContrastiveOptions()
    losses = []
    for _ in range(10):
        loss = batch_loss(model, pairs, tok.pad_token_id, opts)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    assert all(not torch.equal(p, trained[n]) for n, p in model.named_parameters() if n in trained)


def test_run_trains_the_lora_and_records_retrieval_side_by_side(contrastive_run, tiny):
    out, summary, _ = contrastive_run
    weights = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    b = [v for k, v in weights.items() if "lora_B" in k]
    assert b and all(t.abs().sum() > 0 for t in b)  # B starts at zero: nonzero means it trained
    run = json.loads((out / "run.json").read_text())
    assert run["runner"] == "pooling" and run["task"] == "embed" and run["produces"] == "adapter"
    assert run["training"]["steps"] == 8 and run["training"]["seconds"] > 0
    assert run["training"]["trainable_parameters"] == sum(v.numel() for v in weights.values())
    retrieval = run["evaluation"]["retrieval"]
    assert set(retrieval) == {"base", "adapter"} and run["evaluation"]["queries"] == 24
    for side in retrieval.values():
        assert set(side) == {"recall@1", "recall@5", "recall@10", "mrr"}
        assert 0 <= side["recall@1"] <= side["recall@5"] <= side["recall@10"] <= 1
    assert retrieval["base"] != retrieval["adapter"]  # the adapter changed the embeddings


def test_adapter_embeddings_equal_the_served_ones(contrastive_run, tiny):
    """In-process (padded batch, as training and evaluation embed) == tests/oracle.py, the served embedding."""
    out, _, _ = contrastive_run
    tok = AutoTokenizer.from_pretrained(tiny["base"])
    texts = ["The river was quiet.", "It was a river, and it was quiet today, they said.", "fish"]
    ids = [tok(t).input_ids for t in texts]  # with BOS, as /v1/embeddings tokenizes text
    got = embed_all(load_tuned(tiny["base"], out / "adapter"), ids, tok.pad_token_id)
    for vector, prompt in zip(got, ids):
        want = oracle.embedding(tiny["base"], prompt, out / "adapter")
        np.testing.assert_allclose(vector.numpy(), want, rtol=1e-5, atol=1e-6)
    base = embed_all(load_tuned(tiny["base"], None), ids, tok.pad_token_id)
    assert not torch.allclose(got, base, atol=1e-3)


def test_saved_adapter_passes_the_servers_lora_validation_and_publishes_for_embed(contrastive_run, tiny):
    out, summary, adapters = contrastive_run
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    spec = validate_lora(config, out / "adapter" / "adapter_model.safetensors", BaseModelInfo.load(tiny["base"]).linear_shapes,
                         max_rank=16)
    assert spec.rank == 8 and "q_proj" in spec.target_modules
    manifest = json.loads((adapters / out.name / "manifest.json").read_text())
    assert summary["published"] == str(adapters / out.name)
    assert manifest["runner"] == "pooling" and manifest["task"] == "embed" and manifest["method"] == "contrastive"
    identity = base_model_identity(tiny["base"])
    assert mismatch(manifest, identity, runner="pooling", task="embed") is None
    assert "--convert embed" in mismatch(manifest, identity, runner="pooling", task="classify")
    assert "runner" in mismatch(manifest, identity, runner="generate")
    assert manifest["evaluation"]["retrieval"]["adapter"]["recall@1"] == summary["evaluation"]["retrieval"][
        "adapter"]["recall@1"]


def test_lm_head_targets_are_refused_before_training(tiny, paraphrase_data, tmp_path):
    from training.embeddings.contrastive import train_contrastive

    recipe = contrastive_recipe(tiny["base"], paraphrase_data, tmp_path / "r", lora={"target_modules": ["q_proj",
                                                                                                        "lm_head"]})
    with pytest.raises(Refused, match="lm_head is not part of the embedding"):
        train_contrastive(recipe)
    assert not (tmp_path / "r" / "adapter").exists()


def test_command_is_registered_with_documented_options(capsys):
    with pytest.raises(SystemExit):
        COMMANDS["contrastive"][1](["--help"])
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for flag in ("--temperature", "--hard-negatives", "--max-minutes", "--threads", "--rank", "--batch-size"):
        assert flag in help_text
    assert "τ of softmax(cosine / τ)" in help_text
