"""LoRA through the server equals transformers + PEFT, token for token (greedy, float32).

On each code path of the server's LoRA kernel this CPU runs: the session's server runs the CPU's
own (AVX-512 where it has it); where that is not the portable path of AVX2-only CPUs (what CI
runs), a second server runs that one too (ADAPTER_SERVE_LORA_ISA=portable).
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from server.in_engine.lora_ops import native
from tests import oracle
from tests.conftest import API_KEY, ServerProcess

KERNEL_PATHS = ["native"] + (["portable"] if native.path() not in (None, "portable") else [])


@pytest.fixture(scope="module", params=KERNEL_PATHS)
def kernel_server(request, server, tiny, tmp_path_factory):
    """The server whose LoRA kernel runs on the given path."""
    if request.param == "native":
        yield server
        return
    root = tmp_path_factory.mktemp(f"kernel-{request.param}")
    adapters = root / "adapters"
    for name in ("lora-a", "lora-b"):
        shutil.copytree(tiny[name], adapters / name)
    proc = ServerProcess(tiny["base"], adapters, root / "server.log",
                         env={native.ISA_ENV: request.param})
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()
    assert f"LoRA kernel: {request.param} path" in proc.log.read_text()  # the path asked for ran


@pytest.fixture(scope="module")
def kernel_client(kernel_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=kernel_server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=60)

PROMPTS = ["The quick brown fox", "Reverse the word: planet", "1 2 3 4"]
MAX_NEW = 16


def served_ids(client, model: str, prompt_ids: list[int]) -> list[int]:
    r = client.completions.create(model=model, prompt=prompt_ids, max_tokens=MAX_NEW,
                                  temperature=0, extra_body={"return_token_ids": True})
    return r.choices[0].model_extra["token_ids"]


def test_two_loras_and_base_in_one_batch_match_peft(kernel_client, tiny):
    client = kernel_client
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


def test_chat_with_lora_matches_peft(kernel_client, tiny):
    client = kernel_client
    tok = oracle.tokenizer(tiny["base"])
    messages = [{"role": "user", "content": "Say something about adapters."}]
    r = client.chat.completions.create(model="lora-b", messages=messages, max_tokens=MAX_NEW,
                                       temperature=0, extra_body={"return_token_ids": True})
    prompt_ids = oracle.chat_ids(tiny["base"], messages)
    assert r.model_extra["prompt_token_ids"] == list(prompt_ids)
    expected = oracle.greedy(tiny["base"], list(prompt_ids), MAX_NEW, tiny["lora-b"])
    assert r.choices[0].model_extra["token_ids"] == expected
    assert r.choices[0].message.content == tok.decode(expected, skip_special_tokens=True)


def test_lora_on_lm_head_matches_peft(kernel_client, kernel_server, tiny, tmp_path):
    """vLLM applies LoRA on the output layer through its own logits wrapper: still PEFT's result."""
    from safetensors.torch import load_file, save_file

    from tests.e2e.helpers import publish
    from training.tiny import build_lora_adapter

    src = build_lora_adapter(tiny["base"], tmp_path / "head", rank=8, seed=5,
                             target_modules=("q_proj", "lm_head"))
    weights = src / "adapter_model.safetensors"
    # PEFT also saves the full lm_head when it is targeted; only the A/B matrices are the adapter.
    save_file({k: v for k, v in load_file(weights).items() if "base_layer" not in k}, weights)
    publish(src, kernel_server.adapters, "head-lora")
    ids = oracle.tokenizer(tiny["base"]).encode("the output layer")
    got = served_ids(kernel_client, "head-lora", ids)
    assert got == oracle.greedy(tiny["base"], ids, MAX_NEW, src)
    assert got != served_ids(kernel_client, "base", ids)


def test_echoed_prompt_logprobs_match_peft(kernel_client, tiny):
    """echo + logprobs scores the prompt's own tokens (an RL trainer's reference log-probabilities):
    PEFT's teacher-forced log-probabilities, the first token without context."""
    tok = oracle.tokenizer(tiny["base"])
    ids = tok.encode(PROMPTS[0]) + oracle.greedy(tiny["base"], tok.encode(PROMPTS[0]), 8)
    scored = {}
    for model in ("base", "lora-a"):
        r = kernel_client.completions.create(model=model, prompt=ids, max_tokens=1, temperature=0,
                                             echo=True, logprobs=0)
        lp = r.choices[0].logprobs
        assert len(lp.token_logprobs) == len(lp.tokens) == len(lp.text_offset) == len(ids) + 1
        assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
        adapters = () if model == "base" else (tiny[model],)
        expected = [chosen for chosen, _ in oracle.chosen_logprobs(tiny["base"], ids[:1], ids[1:], *adapters)]
        assert lp.token_logprobs[1:len(ids)] == pytest.approx(expected, abs=1e-4), model
        assert lp.text_offset == sorted(lp.text_offset)
        scored[model] = lp.token_logprobs[1:len(ids)]
    assert scored["base"] != pytest.approx(scored["lora-a"], abs=1e-3)  # the adapter is applied
