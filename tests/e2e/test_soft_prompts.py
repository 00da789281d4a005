"""Soft prompts (PEFT prompt tuning) per request, alone or stacked on a LoRA, equal to PEFT."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest
from safetensors.torch import load_file, save_file

from tests import oracle
from tests.e2e.helpers import edit_config, publish
from tests.e2e.test_bad_input import OK_COMPLETION, assert_error
from training.tiny import TinyLlamaSpec, build_base_model, build_prompt_tuning_adapter

MAX_NEW = 16
VIRTUAL = 8  # prompt-a's virtual tokens


def served(client, model, prompt_ids, soft_prompt=None):
    extra = {"return_token_ids": True, **({"soft_prompt": soft_prompt} if soft_prompt else {})}
    r = client.completions.create(model=model, prompt=prompt_ids, max_tokens=MAX_NEW,
                                  temperature=0, extra_body=extra)
    return r.choices[0].model_extra["token_ids"], r.usage


def test_soft_prompt_completion_matches_peft(client, tiny):
    ids = oracle.tokenizer(tiny["base"]).encode("The soft prompt steers this")
    got, usage = served(client, "prompt-a", ids)
    assert got == oracle.greedy(tiny["base"], ids, MAX_NEW, tiny["prompt-a"])
    assert got != served(client, "base", ids)[0]
    assert usage.prompt_tokens == len(ids) + VIRTUAL


def test_soft_prompt_chat_matches_peft(client, tiny):
    messages = [{"role": "user", "content": "What does a soft prompt do?"}]
    r = client.chat.completions.create(model="prompt-a", messages=messages, max_tokens=MAX_NEW,
                                       temperature=0, extra_body={"return_token_ids": True})
    ids = oracle.chat_ids(tiny["base"], messages)
    # The virtual tokens go in front of the whole templated input, as PEFT puts them.
    assert r.choices[0].model_extra["token_ids"] == oracle.greedy(
        tiny["base"], list(ids), MAX_NEW, tiny["prompt-a"])
    assert r.usage.prompt_tokens == len(ids) + VIRTUAL


def test_lora_plus_soft_prompt_matches_peft_with_both(client, tiny):
    ids = oracle.tokenizer(tiny["base"]).encode("stacked adapters")
    got, usage = served(client, "lora-a", ids, soft_prompt="prompt-a")
    assert got == oracle.greedy_stacked(tiny["base"], ids, MAX_NEW, tiny["lora-a"], tiny["prompt-a"])
    assert got != served(client, "lora-a", ids)[0] and got != served(client, "prompt-a", ids)[0]
    assert usage.prompt_tokens == len(ids) + VIRTUAL
    # On the base model, the extension field gives the same as naming the soft prompt in `model`.
    assert served(client, "base", ids, soft_prompt="prompt-a")[0] == served(client, "prompt-a", ids)[0]


def test_mixed_concurrent_batches_equal_single_requests(client, tiny):
    tok = oracle.tokenizer(tiny["base"])
    kinds = [("base", None), ("lora-a", None), ("lora-b", None), ("prompt-a", None),
             ("lora-a", "prompt-a"), ("lora-b", "prompt-a")]
    prompts = [tok.encode(p) for p in ("first prompt here", "a second, longer prompt for mixing",
                                       "3")]
    jobs = [(m, ids, sp) for m, sp in kinds for ids in prompts]
    alone = [served(client, m, ids, sp)[0] for m, ids, sp in jobs]
    with ThreadPoolExecutor(len(jobs)) as pool:
        together = list(pool.map(lambda job: served(client, *job)[0], jobs * 2))
    assert together == alone * 2


@pytest.mark.parametrize("virtual", [5, 150])
def test_virtual_tokens_computed_once_then_reused(client, server, tiny, tmp_path, virtual):
    """A soft prompt's first request computes its virtual tokens; the next ones load their keys
    and values (server.in_engine.soft_prompt_cache), shown as cached prompt tokens, with PEFT's output.
    150 virtual tokens span two 128-token KV blocks: the first whole block comes from vLLM's
    prefix cache, the rest from the soft-prompt cache. Each LoRA under it is a cache entry."""
    name = f"fresh-{virtual}"
    path = publish(build_prompt_tuning_adapter(tiny["base"], tmp_path / name,
                                               num_virtual_tokens=virtual, seed=virtual),
                   server.adapters, name)
    tok = oracle.tokenizer(tiny["base"])
    for lora in (None, "lora-a"):
        for i, (text, cached) in enumerate([("computed here", 0), ("then reused", virtual),
                                            ("reused again", virtual)]):
            ids = tok.encode(text)
            got, usage = (served(client, lora, ids, soft_prompt=name) if lora
                          else served(client, name, ids))
            expected = (oracle.greedy_stacked(tiny["base"], ids, MAX_NEW, tiny[lora], path) if lora
                        else oracle.greedy(tiny["base"], ids, MAX_NEW, path))
            assert got == expected, (lora, i)
            # The soft prompt matters; and this request takes over the blocks just freed, so a
            # load that copied nothing (leaving the last request's KV in place) would be caught.
            assert got != served(client, lora or "base", ids)[0]
            assert usage.prompt_tokens_details.cached_tokens == cached, (lora, i)


def test_soft_prompt_sampling_and_streaming(client):
    kw = dict(model="lora-b", prompt="sample me", max_tokens=10, temperature=1.0, seed=9, n=2,
              extra_body={"soft_prompt": "prompt-a"})
    a = client.completions.create(**kw)
    b = client.completions.create(**kw)
    assert [c.text for c in a.choices] == [c.text for c in b.choices]
    streamed = {0: "", 1: ""}
    for chunk in client.completions.create(**kw, stream=True):
        for c in chunk.choices:
            streamed[c.index] += c.text
    assert streamed == {c.index: c.text for c in a.choices}


def test_context_check_counts_virtual_tokens(http, tiny):
    word = oracle.tokenizer(tiny["base"]).encode(" word", add_special_tokens=False)[0]
    ids = [word] * 500
    body = {**OK_COMPLETION, "prompt": ids, "max_tokens": 10}
    assert http.post("/v1/completions", json=body).status_code == 200  # 510 <= 512
    e = assert_error(http.post("/v1/completions", json={**body, "model": "prompt-a"}), 400,
                     param="max_tokens", contains="maximum context length is 512")
    assert "518" in e["message"]


@pytest.mark.parametrize("body, status, param, contains", [
    ({"model": "lora-a", "soft_prompt": "lora-b"}, 400, "soft_prompt", "not a soft prompt"),
    ({"model": "prompt-a", "soft_prompt": "prompt-a"}, 400, "soft_prompt", "already a soft prompt"),
    ({"model": "lora-a", "soft_prompt": "missing"}, 404, "soft_prompt", "does not exist"),
    ({"model": "lora-a", "soft_prompt": "../prompt-a"}, 404, "soft_prompt", ""),
    # Scoring the prompt: virtual tokens have no log-probabilities.
    ({"model": "prompt-a", "echo": True, "logprobs": 0}, 400, "echo", "soft prompt"),
])
def test_bad_stacking_requests(http, body, status, param, contains):
    assert_error(http.post("/v1/completions", json={**OK_COMPLETION, **body}), status,
                 param=param, contains=contains)


@pytest.fixture(scope="module")
def broken_soft_prompts(server, tiny, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("broken-soft")
    made = {}
    other = build_base_model(tmp / "other", spec=TinyLlamaSpec(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=32))
    made["sp-hidden"] = publish(build_prompt_tuning_adapter(other, tmp / "h", seed=1),
                                server.adapters, "sp-hidden")
    made["sp-too-long"] = publish(build_prompt_tuning_adapter(
        tiny["base"], tmp / "long", num_virtual_tokens=600, seed=1), server.adapters, "sp-too-long")

    renamed = tmp / "renamed"
    shutil.copytree(tiny["prompt-a"], renamed)
    weights = load_file(renamed / "adapter_model.safetensors")
    save_file({"something_else": weights["prompt_embeddings"]}, renamed / "adapter_model.safetensors")
    made["sp-no-tensor"] = publish(renamed, server.adapters, "sp-no-tensor")

    prefix = tmp / "prefix"
    shutil.copytree(tiny["prompt-a"], prefix)
    edit_config(prefix, peft_type="PREFIX_TUNING")
    made["sp-prefix"] = publish(prefix, server.adapters, "sp-prefix")
    yield made
    for path in made.values():
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("name, reason", [
    ("sp-hidden", "hidden size 64 does not match the base model's hidden size 128"),
    ("sp-too-long", "600 virtual tokens leave no room"),
    ("sp-no-tensor", "no `prompt_embeddings` tensor"),
    ("sp-prefix", "prefix tuning"),
])
def test_bad_soft_prompts_refused_while_others_work(client, http, broken_soft_prompts, name, reason):
    for body in ({"model": name}, {"model": "lora-a", "soft_prompt": name}):
        assert_error(http.post("/v1/completions", json={**OK_COMPLETION, **body}), 400,
                     contains=reason)
    # Greedy: a random tiny model never picks eos (its logit is 0, not -inf), but sampling can.
    r = client.completions.create(model="lora-a", prompt="still fine", max_tokens=3, temperature=0,
                                  extra_body={"soft_prompt": "prompt-a"})
    assert r.usage.completion_tokens == 3


def test_p_tuning_adapter_matches_peft(client, server, tiny, tmp_path):
    """P-tuning saves its prompt encoder's output as `prompt_embeddings`: served the same way."""
    import torch
    from peft import PromptEncoderConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny["base"]), PromptEncoderConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=6, encoder_hidden_size=64))
    with torch.no_grad():  # make the encoder's output large enough to steer the model
        for p in model.prompt_encoder.parameters():
            p.mul_(8.0)
    model.save_pretrained(tmp_path / "ptune", safe_serialization=True)
    publish(tmp_path / "ptune", server.adapters, "ptune")

    ids = oracle.tokenizer(tiny["base"]).encode("p-tuning through the server")
    got, usage = served(client, "ptune", ids)
    assert got == oracle.greedy(tiny["base"], ids, MAX_NEW, tmp_path / "ptune")
    assert got != served(client, "base", ids)[0]
    assert usage.prompt_tokens == len(ids) + 6
