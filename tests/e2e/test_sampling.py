"""Every sampling control observably does its job through the real server and openai client."""

from __future__ import annotations

import math

import pytest

PROMPT = "Once upon a time"


def complete(client, **kw):
    args = {"model": "base", "prompt": PROMPT, "max_tokens": 12, **kw}
    return client.completions.create(**args)


def texts(r) -> list[str]:
    return [c.text for c in sorted(r.choices, key=lambda c: c.index)]


def test_temperature_zero_is_deterministic(client):
    assert texts(complete(client, temperature=0)) == texts(complete(client, temperature=0))


def test_seeded_sampling_is_reproducible_and_seeds_differ(client):
    a = complete(client, temperature=1.0, seed=7, n=3)
    b = complete(client, temperature=1.0, seed=7, n=3)
    c = complete(client, temperature=1.0, seed=8, n=3)
    assert texts(a) == texts(b)
    assert texts(a) != texts(c)


def test_top_k_1_equals_greedy(client):
    greedy = texts(complete(client, temperature=0))
    assert texts(complete(client, temperature=1.5, seed=1, extra_body={"top_k": 1})) == greedy


def test_tiny_top_p_and_high_min_p_equal_greedy(client):
    greedy = texts(complete(client, temperature=0))
    assert texts(complete(client, temperature=1.5, top_p=1e-6, seed=2)) == greedy
    assert texts(complete(client, temperature=1.5, seed=3, extra_body={"min_p": 1.0})) == greedy


def test_high_temperature_sampling_differs_from_greedy(client):
    greedy = texts(complete(client, temperature=0))[0]
    samples = texts(complete(client, temperature=2.0, seed=4, n=4))
    assert any(s != greedy for s in samples)


def test_max_tokens_is_respected(client):
    r = complete(client, temperature=0, max_tokens=5, extra_body={"return_token_ids": True})
    assert len(r.choices[0].model_extra["token_ids"]) == 5
    assert r.usage.completion_tokens == 5
    assert r.choices[0].finish_reason == "length"


def test_stop_string_ends_output(client):
    full = complete(client, temperature=0, max_tokens=24).choices[0].text
    stop = full[6:9]
    assert stop.strip(), full
    r = complete(client, temperature=0, max_tokens=24, stop=[stop])
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].text == full[: full.index(stop)]


def test_n_gives_n_choices_with_usage(client):
    r = complete(client, temperature=1.0, seed=5, n=3)
    assert sorted(c.index for c in r.choices) == [0, 1, 2]
    assert r.usage.completion_tokens == 3 * 12
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_list_of_prompts_each_get_n_choices(client):
    prompts = ["a b c", "x y z"]
    r = client.completions.create(model="base", prompt=prompts, max_tokens=4, n=2,
                                  temperature=1.0, seed=3, extra_body={"top_k": 1})
    assert sorted(c.index for c in r.choices) == [0, 1, 2, 3]
    by_index = {c.index: c.text for c in r.choices}
    # top_k=1 makes every sample the greedy one: choices 2i and 2i+1 belong to prompt i.
    for i, prompt in enumerate(prompts):
        greedy = complete(client, prompt=prompt, max_tokens=4, temperature=0).choices[0].text
        assert by_index[2 * i] == by_index[2 * i + 1] == greedy


def test_completion_logprobs_are_consistent(client):
    r = complete(client, temperature=0, logprobs=3, extra_body={"return_token_ids": True})
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 12
    assert "".join(lp.tokens) == r.choices[0].text
    for chosen, top in zip(lp.token_logprobs, lp.top_logprobs):
        assert len(top) <= 3 and chosen <= 0
        # Greedy picks the most likely token, so its logprob is the best of the top ones.
        assert math.isclose(chosen, max(top.values()), rel_tol=1e-4, abs_tol=1e-4)
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(12)]


def test_chat_logprobs_are_consistent(client):
    r = client.chat.completions.create(
        model="lora-a", messages=[{"role": "user", "content": "hi"}], max_tokens=6,
        temperature=0, logprobs=True, top_logprobs=2)
    content = r.choices[0].logprobs.content
    assert len(content) == 6
    assert "".join(t.token for t in content) == r.choices[0].message.content
    for t in content:
        assert len(t.top_logprobs) == 2
        assert t.logprob == pytest.approx(max(x.logprob for x in t.top_logprobs), abs=1e-4)
        assert bytes(t.bytes).decode() == t.token


def test_penalties_change_output(client):
    greedy = texts(complete(client, temperature=0, max_tokens=24))
    for extra in ({"presence_penalty": 2.0}, {"frequency_penalty": 2.0},
                  {"extra_body": {"repetition_penalty": 2.0}}):
        assert texts(complete(client, temperature=0, max_tokens=24, **extra)) != greedy, extra


def test_logit_bias_forces_a_token(client, tiny):
    from tests import oracle
    token = oracle.tokenizer(tiny["base"]).encode(" the", add_special_tokens=False)[0]
    r = complete(client, temperature=0, max_tokens=4, logit_bias={str(token): 100},
                 extra_body={"return_token_ids": True})
    assert r.choices[0].model_extra["token_ids"] == [token] * 4


@pytest.mark.parametrize("model", ["base", "lora-a", "prompt-a"])
def test_streaming_text_equals_non_streaming(client, model):
    kw = dict(model=model, prompt=PROMPT, max_tokens=16, temperature=0)
    whole = client.completions.create(**kw)
    chunks = list(client.completions.create(**kw, stream=True,
                                            stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    # Same counts; cached_tokens may grow, the second request finding the first's KV cached.
    counts = [(u.prompt_tokens, u.completion_tokens, u.total_tokens, u.prompt_tokens_details is None)
              for u in (chunks[-1].usage, whole.usage)]
    assert counts[0] == counts[1]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_chat_streaming_equals_non_streaming_with_n(client):
    kw = dict(model="lora-b", messages=[{"role": "user", "content": "tell me"}], max_tokens=10,
              temperature=0.8, seed=11, n=2)
    whole = client.chat.completions.create(**kw)
    parts = {0: "", 1: ""}
    roles = set()
    usage = None
    for chunk in client.chat.completions.create(**kw, stream=True,
                                                stream_options={"include_usage": True}):
        for c in chunk.choices:
            parts[c.index] += c.delta.content or ""
            if c.delta.role:
                roles.add((c.index, c.delta.role))
        usage = chunk.usage or usage
    assert parts == {c.index: c.message.content for c in whole.choices}
    assert roles == {(0, "assistant"), (1, "assistant")}
    assert usage.completion_tokens == whole.usage.completion_tokens == 20


def test_chat_max_completion_tokens_and_usage(client):
    r = client.chat.completions.create(
        model="base", messages=[{"role": "system", "content": "be brief"},
                                {"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        max_completion_tokens=3, temperature=0)
    assert r.usage.completion_tokens == 3 and r.choices[0].finish_reason == "length"
    assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"


@pytest.mark.parametrize("stream", [False, True])
def test_echo_with_logprobs_scores_the_prompt_then_the_answer(client, stream):
    """OpenAI's legacy form of prompt scoring: the prompt's tokens, then the generated ones."""
    plain = complete(client, temperature=0, max_tokens=4, logprobs=2)
    if stream:
        chunks = list(complete(client, temperature=0, max_tokens=4, logprobs=2, echo=True, stream=True))
        text = "".join(c.choices[0].text for c in chunks)
        tokens = [t for c in chunks for t in c.choices[0].logprobs.tokens]
        token_logprobs = [t for c in chunks for t in c.choices[0].logprobs.token_logprobs]
    else:
        r = complete(client, temperature=0, max_tokens=4, logprobs=2, echo=True)
        text, lp = r.choices[0].text, r.choices[0].logprobs
        tokens, token_logprobs = lp.tokens, lp.token_logprobs
        assert [None] + [len(t) for t in lp.top_logprobs[1:]] == [None] + [2] * (len(tokens) - 1)
    assert text == PROMPT + plain.choices[0].text
    prompt_len = len(tokens) - 4
    assert "".join(tokens[:prompt_len]).endswith(PROMPT)  # after the BOS token, if the model has one
    assert token_logprobs[0] is None and all(v <= 0 for v in token_logprobs[1:])
    assert token_logprobs[prompt_len:] == pytest.approx(plain.choices[0].logprobs.token_logprobs, abs=1e-5)
