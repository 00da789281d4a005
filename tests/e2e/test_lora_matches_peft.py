"""LoRA through the server equals transformers + PEFT, token for token (greedy, float32)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor


from tests import oracle

PROMPTS = ["The quick brown fox", "Reverse the word: planet", "1 2 3 4"]
MAX_NEW = 16


def served_ids(client, model: str, prompt_ids: list[int]) -> list[int]:
    r = client.completions.create(model=model, prompt=prompt_ids, max_tokens=MAX_NEW,
                                  temperature=0, extra_body={"return_token_ids": True})
    return r.choices[0].model_extra["token_ids"]


def test_two_loras_and_base_in_one_batch_match_peft(client, tiny):
    tok = oracle.tokenizer(tiny["base"])
    jobs = [(model, tok.encode(p)) for p in PROMPTS for model in ("lora-a", "lora-b", "base")]
    # Concurrent requests, so the engine batches different adapters together.
    with ThreadPoolExecutor(len(jobs)) as pool:
        served = list(pool.map(lambda job: served_ids(client, *job), jobs))
    for (model, ids), got in zip(jobs, served):
        adapters = () if model == "base" else (tiny[model],)
        assert got == oracle.greedy(tiny["base"], ids, MAX_NEW, *adapters), (model, ids)
    # The adapters must matter, or the comparison above proves nothing.
    outs = {model: got for (model, ids), got in zip(jobs, served) if ids == jobs[0][1]}
    assert len({tuple(v) for v in outs.values()}) == 3


def test_chat_with_lora_matches_peft(client, tiny):
    tok = oracle.tokenizer(tiny["base"])
    messages = [{"role": "user", "content": "Say something about adapters."}]
    r = client.chat.completions.create(model="lora-b", messages=messages, max_tokens=MAX_NEW,
                                       temperature=0, extra_body={"return_token_ids": True})
    prompt_ids = oracle.chat_ids(tiny["base"], messages)
    assert r.model_extra["prompt_token_ids"] == list(prompt_ids)
    expected = oracle.greedy(tiny["base"], list(prompt_ids), MAX_NEW, tiny["lora-b"])
    assert r.choices[0].model_extra["token_ids"] == expected
    assert r.choices[0].message.content == tok.decode(expected, skip_special_tokens=True)


def test_lora_on_lm_head_matches_peft(client, server, tiny, tmp_path):
    """vLLM applies LoRA on the output layer through its own logits wrapper: still PEFT's result."""
    from safetensors.torch import load_file, save_file

    from tests.e2e.helpers import publish
    from training.tiny import build_lora_adapter

    src = build_lora_adapter(tiny["base"], tmp_path / "head", rank=8, seed=5,
                             target_modules=("q_proj", "lm_head"))
    weights = src / "adapter_model.safetensors"
    # PEFT also saves the full lm_head when it is targeted; only the A/B matrices are the adapter.
    save_file({k: v for k, v in load_file(weights).items() if "base_layer" not in k}, weights)
    publish(src, server.adapters, "head-lora")
    ids = oracle.tokenizer(tiny["base"]).encode("the output layer")
    got = served_ids(client, "head-lora", ids)
    assert got == oracle.greedy(tiny["base"], ids, MAX_NEW, src)
    assert got != served_ids(client, "base", ids)
