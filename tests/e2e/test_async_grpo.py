"""TRL's AsyncGRPO trains a LoRA against this server, unchanged, on CPU (issue 26).

`trl.experimental.async_grpo.AsyncGRPOTrainer` (TRL 1.16) with a PEFT LoRA and a server whose
`/server_info` reports a `lora_config` syncs only the adapter: each step it publishes
`trl-policy-vN` into `<output_dir>/.vllm_lora` (an atomic rename), calls `/pause?mode=keep`,
`/v1/load_lora_adapter`, `/resume`, unloads the version that fell out of its staleness window,
and its rollout worker (a spawned process) generates through `/v1/completions` with token-id
prompts, `return_token_ids`, `logprobs: 0`, a 63-bit seed, and `model` = the current version.

Here it trains the tiny Llama for a few steps on a toy task whose reward the LoRA can raise
(answer with digits: tests/e2e/async_grpo_helpers.digit_reward), against a real server
subprocess started without API keys (TRL sends none) and with `--lora-roots` its adapter folder.
What is checked: every version was loaded, from the trainer's folder, and stale ones unloaded
(the server's listing at every step, its log, the engine's LoRA count at the end); every
generation request named a version loaded when it arrived (none failed, none named a version
before it was published) and every step's version answered requests; TRL trained each step on
rollouts within its staleness window; the server answers with the weights the trainer trained;
the reward rose.

What TRL needs on CPU, set by the test, TRL unchanged:
- its training forward's "tree" attention calls FlashAttention-3 downloaded from the hub
  (`packing._flash_attn`): replaced by the same math in plain torch
  (async_grpo_helpers.flash_attn_varlen_func, checked below against dense attention);
- `AsyncGRPOTrainer.__init__` asks `torch.cuda.get_device_name` for the device's peak FLOPs
  (MFU metrics), which raises on a CPU build of torch: answered "unknown" (None), as TRL does
  for a GPU it does not know;
- the tiny tokenizer's chat template is not one TRL knows how to parse answers of: the
  tokenizer gets a response template (async_grpo_helpers.RESPONSE_TEMPLATE);
- config: `bf16=False`, `use_cpu=True`, no gradient checkpointing, `token_budget=0` (fixed
  batches of `per_device_train_batch_size` samples: one optimizer step per batch); the rest
  (`max_staleness`, `epsilon`, learning rate) is the toy task's, below.
"""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

import httpx
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import SERVER_FLAGS, ServerProcess, keyless
from tests.e2e.async_grpo_helpers import (
    ANSWER_TOKENS,
    CPU_FLASH_ATTN,
    RESPONSE_TEMPLATE,
    digit_reward,
    flash_attn_varlen_func,
)
from training.tiny.adapters import ALL_LINEAR

pytestmark = pytest.mark.usefixtures("one_thread")

# The toy task's schedule, chosen by running this loop (and an in-process replica of it, over 6
# seeds): the reward stays near 0.03 for 5-7 steps, then rises, to 0.2-0.9 by step 10. Training
# stops once the mean reward of the last two steps is RISE above that of the first two (after 8
# to 13 steps in six runs here), or after MAX_STEPS (2-4 s each).
MAX_STEPS = 20
RISE = 0.15
GENERATIONS = 8
PROMPTS_PER_STEP = 4
LEARNING_RATE = 2e-2
MAX_STALENESS = 0
"""TRL's strictest: it already trains each step on the previous version's rollouts (its queue is
read one batch ahead, see below); with a second version of lag (max_staleness 1) the reward was
still flat after 6 steps here, and below 0.1 after 10 in the replica."""
EPSILON = 0.5
"""PPO's clip range, above TRL's default 0.2, which with that version of lag clipped 15-40% of
the tokens here: over 6 seeds of the replica the reward rose by RISE after 7-10 steps with 0.5,
after 7-13 with 0.2."""
LORA_RANK = 8
LORA_NAME = "trl-policy"  # AsyncGRPOTrainer._lora_name
PROMPTS = ["Write a number.", "Count: 1 2 3", "What is 6 times 7?", "Give me a phone number.",
           "Pick a year.", "How many days are in a week?", "Your lucky number?", "Add 2 and 2."]


def risen(rewards: list[float]) -> bool:
    """The last two steps' mean reward is RISE above the first two's (both of which train on
    v1's rollouts, one batch being fetched ahead: the untrained policy's reward)."""
    return len(rewards) >= 4 and sum(rewards[-2:]) / 2 >= sum(rewards[:2]) / 2 + RISE


# ---- the CPU flash_attn_varlen_func against dense attention -----------------------------------

def dense_attention(q, k, v, causal: bool, scale: float | None) -> torch.Tensor:
    """One segment, spelled out: (Lq, H, D) x (Lk, Hk, D); bottom-right causal mask; a query
    with no key visible gets zeros (FlashAttention's convention)."""
    heads, kv_heads = q.shape[1], k.shape[1]
    k, v = (x.repeat_interleave(heads // kv_heads, dim=1) for x in (k, v))
    scores = torch.einsum("qhd,khd->hqk", q, k) * (scale if scale is not None else q.shape[-1] ** -0.5)
    if causal:
        len_q, len_k = q.shape[0], k.shape[0]
        visible = torch.arange(len_k)[None, :] <= torch.arange(len_q)[:, None] + (len_k - len_q)
        scores = scores.masked_fill(~visible, float("-inf"))
    weights = torch.nan_to_num(scores.softmax(-1), nan=0.0)
    return torch.einsum("hqk,khd->qhd", weights, v)


@pytest.mark.parametrize("segments", [
    [(7, 7)],                   # one sample
    [(3, 9), (1, 4), (6, 6)],   # trie segments: fewer queries than keys (their path)
    [(5, 2), (2, 3)],           # more queries than keys: the first rows see nothing
])
@pytest.mark.parametrize("heads, kv_heads", [(4, 4), (4, 2), (4, 1)])
@pytest.mark.parametrize("causal, scale", [(True, None), (True, 0.3), (False, None)])
def test_cpu_flash_attn_varlen_matches_dense_attention(segments, heads, kv_heads, causal, scale):
    generator = torch.Generator().manual_seed(0)
    total_q, total_k = sum(s[0] for s in segments), sum(s[1] for s in segments)
    q = torch.randn(total_q, heads, 32, generator=generator, requires_grad=True)
    k = torch.randn(total_k, kv_heads, 32, generator=generator, requires_grad=True)
    v = torch.randn(total_k, kv_heads, 32, generator=generator, requires_grad=True)
    cu_q = torch.tensor([0, *torch.tensor([s[0] for s in segments]).cumsum(0).tolist()], dtype=torch.int32)
    cu_k = torch.tensor([0, *torch.tensor([s[1] for s in segments]).cumsum(0).tolist()], dtype=torch.int32)

    out = flash_attn_varlen_func(q, k, v, cu_q, cu_k, max(s[0] for s in segments),
                                 max(s[1] for s in segments), softmax_scale=scale, causal=causal)
    expected = torch.cat([dense_attention(q[cu_q[i]:cu_q[i + 1]], k[cu_k[i]:cu_k[i + 1]],
                                          v[cu_k[i]:cu_k[i + 1]], causal, scale)
                          for i in range(len(segments))])
    assert out.shape == (total_q, heads, 32)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)

    # The trainer backpropagates through it: the gradients agree too.
    upstream = torch.randn(out.shape, generator=generator)
    grads = torch.autograd.grad((out * upstream).sum(), (q, k, v))
    expected_grads = torch.autograd.grad((expected * upstream).sum(), (q, k, v))
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_cpu_flash_attn_refuses_what_it_does_not_implement():
    q = torch.zeros(2, 1, 32)
    cu = torch.tensor([0, 2], dtype=torch.int32)
    with pytest.raises(NotImplementedError):
        flash_attn_varlen_func(q, q, q, cu, cu, 2, 2, causal=True, window_size=(4, 0))
    with pytest.raises(NotImplementedError):
        flash_attn_varlen_func(q, q, q, cu, cu, 2, 2, causal=True, softcap=30.0)


def test_tree_attention_on_cpu_is_each_samples_own_attention(tiny, monkeypatch):
    """The tiny model under TRL's tree attention, its samples packed into a prefix trie (shared
    prompts forwarded once), gives each sample the logits of a plain forward of that sample."""
    from transformers import AutoModelForCausalLM
    from trl.experimental.async_grpo import packing

    monkeypatch.setattr(packing, "_flash_attn", lambda: CPU_FLASH_ATTN)
    packing.register_tree_attention()
    tree = AutoModelForCausalLM.from_pretrained(tiny["base"], attn_implementation=packing.TREE_ATTENTION,
                                                dtype=torch.float32)
    plain = AutoModelForCausalLM.from_pretrained(tiny["base"], attn_implementation="eager",
                                                 dtype=torch.float32)
    prompt = [0, 4, 60, 61, 62, 1, 204, 5, 204]
    samples = [prompt + [70, 71, 72], prompt + [70, 73], prompt + [80, 81, 82, 83], [0, 4, 90, 91, 1, 5, 92]]
    row = packing.TreeRow()
    for i, ids in enumerate(samples):
        row.add({"input_ids": torch.tensor(ids), "completion_mask": torch.tensor([0] + [1] * (len(ids) - 1)),
                 "old_log_probs": torch.zeros(len(ids)), "advantage": 0.0, "group_id": int(i == 3)})
    packed = row.pack()
    assert len(packed["input_ids"]) < sum(map(len, samples))  # the shared prompt is forwarded once
    max_q, max_k = packed["tree_max_seqlens"].tolist()
    with torch.no_grad():
        logits = tree(input_ids=packed["input_ids"][None], position_ids=packed["position_ids"][None],
                      tree_kv_index=packed["tree_kv_index"], tree_cu_seqlens_q=packed["tree_cu_seqlens_q"],
                      tree_cu_seqlens_k=packed["tree_cu_seqlens_k"], tree_max_seqlen_q=max_q,
                      tree_max_seqlen_k=max_k).logits[0]
        for i, ids in enumerate(samples):
            # token_index: the packed position of each of sample i's tokens but the last.
            got = logits[packed["token_index"][packed["segment_id"] == i]]
            torch.testing.assert_close(got, plain(input_ids=torch.tensor([ids])).logits[0, :-1],
                                       atol=1e-4, rtol=1e-4)


# ---- AsyncGRPO against the server --------------------------------------------------------------

def version(n: int) -> str:
    return f"{LORA_NAME}-v{n}"


def metric_samples(url: str, name: str) -> list:
    text = httpx.get(url + "/metrics", timeout=30).text
    return [s for family in text_string_to_metric_families(text) for s in family.samples if s.name == name]


def requests_by_version(url: str) -> dict[tuple[str, str], float]:
    """server_requests_total by (adapter, status), for the trainer's versions."""
    return {(s.labels["adapter"], s.labels["status"]): s.value
            for s in metric_samples(url, "server_requests_total")
            if s.labels["adapter"].startswith(LORA_NAME)}


class RequestsSeen(threading.Thread):
    """server_requests_total by (version, status), as high as each was ever seen. A version's
    series go once it is unloaded and its last request has finished (server.metrics.Metrics.forget:
    online RL would otherwise grow the server by a label set per step), so they are polled while
    training runs, each version serving for a whole step, and kept here."""

    def __init__(self, url: str, every: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.url, self.every, self.stop = url, every, threading.Event()
        self.lock, self.seen = threading.Lock(), {}

    def run(self) -> None:
        while not self.stop.wait(self.every):
            self.merge()

    def merge(self) -> None:
        counts = requests_by_version(self.url)
        with self.lock:
            for key, count in counts.items():
                self.seen[key] = max(self.seen.get(key, 0), count)

    def counts(self) -> dict[tuple[str, str], float]:
        self.merge()
        with self.lock:
            return dict(self.seen)


def error_counts(url: str) -> dict[tuple[str, str], float]:
    """server_errors_total by (endpoint, status)."""
    return {(s.labels["endpoint"], s.labels["status"]): s.value
            for s in metric_samples(url, "server_errors_total")}


def engine_lora_count(url: str) -> float:
    """vllm:num_cpu_loaded_lora_adapters: the LoRAs the engine holds (its cache)."""
    return metric_samples(url, "vllm:num_cpu_loaded_lora_adapters")[0].value


def served_versions(url: str) -> set[str]:
    return {m["id"] for m in httpx.get(url + "/v1/models", timeout=30).json()["data"]
            if m["id"].startswith(LORA_NAME)}


@pytest.fixture
def rl_server(tiny, tmp_path):
    """A server for the trainer: no API keys (TRL sends none); adapters loadable from the
    trainer's adapter folder (`AsyncGRPOTrainer._lora_dir`: `<output_dir>/.vllm_lora`); a
    batch may mix max_staleness + 2 versions (TRL's requirement: the newest is loaded before the
    oldest is unloaded) and the engine's LoRA cache holds more than the run publishes, so that
    a version left loaded would show in its count instead of being evicted. Not waited for
    here: it starts while the test imports TRL and builds the trainer."""
    output_dir = tmp_path / "trainer"
    lora_dir = output_dir / ".vllm_lora"
    lora_dir.mkdir(parents=True)
    adapters = tmp_path / "adapters"
    adapters.mkdir()
    proc = ServerProcess(tiny["base"], adapters, tmp_path / "server.log",
                         "--lora-roots", str(lora_dir), "--max-lora-rank", str(LORA_RANK),
                         "--max-loras", str(MAX_STALENESS + 2), "--max-cpu-loras", str(MAX_STEPS + 4),
                         flags=keyless(SERVER_FLAGS))
    proc.output_dir, proc.lora_dir = output_dir, lora_dir
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def own_environment():
    """The trainer (TRL, accelerate) sets process environment variables that later in-process
    tests would read (servers do not: they get the suite's starting environment)."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.mark.usefixtures("own_environment")
def test_async_grpo_trains_a_lora_through_the_server(rl_server, tiny, monkeypatch):
    import huggingface_hub.constants
    from datasets import Dataset
    from peft import LoraConfig
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, TrainerCallback
    from trl.experimental.async_grpo import AsyncGRPOConfig, AsyncGRPOTrainer, async_grpo_trainer, packing

    from tests import oracle

    url = rl_server.url
    # FlashAttention-3 from the hub is the GPU path; the same math in torch on CPU (the module
    # docstring). Only the trainer's process forwards the model: the rollout worker does HTTP.
    monkeypatch.setattr(packing, "_flash_attn", lambda: CPU_FLASH_ATTN)
    # torch.cuda.get_device_name raises on a CPU build; None is TRL's "peak FLOPs unknown".
    monkeypatch.setattr(async_grpo_trainer, "get_peak_flops_per_device", lambda accelerator, dtype: None)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_TELEMETRY", True)

    tokenizer = AutoTokenizer.from_pretrained(tiny["base"])
    tokenizer.response_template = RESPONSE_TEMPLATE
    dataset = Dataset.from_dict({"prompt": [[{"role": "user", "content": p}] for p in PROMPTS]})
    args = AsyncGRPOConfig(
        output_dir=str(rl_server.output_dir),
        vllm_server_base_url=url,
        max_steps=MAX_STEPS,
        num_generations=GENERATIONS,
        per_device_train_batch_size=GENERATIONS * PROMPTS_PER_STEP,
        token_budget=0,
        max_completion_length=ANSWER_TOKENS,
        max_staleness=MAX_STALENESS,
        learning_rate=LEARNING_RATE,
        epsilon=EPSILON,
        bf16=False,
        use_cpu=True,
        gradient_checkpointing=False,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=0,
    )
    lora = LoraConfig(r=LORA_RANK, lora_alpha=2 * LORA_RANK, lora_dropout=0.0, task_type="CAUSAL_LM",
                      target_modules=list(ALL_LINEAR))

    class ServerProbe(TrainerCallback):
        """What the server serves and the requests each version answered: before the first
        version is published (train begin) and at the end of each step, before the trainer
        publishes the next (user callbacks run before the trainer's own). And the stop once the
        reward has risen (the step's version is still published)."""

        def __init__(self):
            self.snapshots: list[tuple[set[str], dict]] = []
            self.rewards: list[float] = []

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "reward" in logs:
                self.rewards.append(logs["reward"])
                control.should_training_stop |= risen(self.rewards)

        def snapshot(self):
            self.snapshots.append((served_versions(url), requests_seen.counts()))

        def on_train_begin(self, *args, **kwargs):
            self.snapshot()

        def on_step_end(self, *args, **kwargs):
            self.snapshot()

    probe = ServerProbe()
    rl_server.wait_ready()
    requests_seen = RequestsSeen(url)
    requests_seen.start()
    errors_before = error_counts(url)  # /health answers 503 while the engine starts
    started = time.monotonic()
    trainer = AsyncGRPOTrainer(model=str(tiny["base"]), reward_funcs=digit_reward, args=args,
                               train_dataset=dataset, processing_class=tokenizer, peft_config=lora,
                               callbacks=[probe])
    assert trainer._lora_sync, "the trainer did not choose adapter-only sync"
    assert trainer._lora_dir == str(rl_server.lora_dir)
    try:
        trainer.train()
    finally:
        requests_seen.stop.set()
    trained_s = time.monotonic() - started

    steps_run = trainer.state.global_step
    log = rl_server.log.read_text()
    final_served = served_versions(url)
    final_requests = requests_seen.counts()
    errors = error_counts(url)
    steps = [entry for entry in trainer.state.log_history if "reward" in entry]
    rewards = [entry["reward"] for entry in steps]
    print(f"AsyncGRPO: {steps_run} steps in {trained_s:.1f} s, reward by step "
          f"{[round(r, 3) for r in rewards]}, requests by version "
          f"{({name: count for (name, status), count in final_requests.items()})}")

    # 1. Every step's version was loaded (v1 at train begin, v(k+1) after step k), from the
    #    trainer's folder, each between a /pause?mode=keep and a /resume; stale versions were
    #    unloaded: from the server's listing at every step, and from the engine at the end.
    last = steps_run + 1
    loaded = re.findall(rf"adapter ({LORA_NAME}-v\d+) v\d+ \(lora\) ready from (\S+)", log)
    assert [name for name, _ in loaded] == [version(n) for n in range(1, last + 1)]
    assert all(Path(path).resolve() == (rl_server.lora_dir / name).resolve() for name, path in loaded)
    access = re.findall(r'"(POST /[^ ]+) HTTP/1\.1" (\d+)', log)
    for call, times in (("/pause?mode=keep", last), ("/v1/load_lora_adapter", last), ("/resume", last),
                        ("/v1/unload_lora_adapter", last - (MAX_STALENESS + 1))):
        assert access.count((f"POST {call}", "200")) == times, call
    assert {status for _, status in access} == {"200"}
    assert probe.snapshots[0][0] == set()
    for step, (served, _) in enumerate(probe.snapshots[1:], start=1):
        # After step k, v(k) is the newest: the sync that loaded it unloaded v(k - s - 1).
        assert served == {version(n) for n in range(max(1, step - MAX_STALENESS), step + 1)}, step
    assert final_served == {version(n) for n in range(last - MAX_STALENESS, last + 1)}
    r = httpx.post(url + "/v1/completions", json={"model": version(1), "prompt": "hi", "max_tokens": 1})
    assert r.status_code == 404  # an unloaded version is never answered
    deadline = time.monotonic() + 15  # the engine lets an unloaded LoRA go asynchronously
    while (engine_loras := engine_lora_count(url)) > len(final_served) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert engine_loras == len(final_served) == MAX_STALENESS + 1

    # 2. The rollouts' requests named the trainer's versions, within its staleness window. A
    #    request is answered only if the version it names is loaded when it arrives (else 404,
    #    counted in server_errors_total, which did not move), and at the end of step k the
    #    server held exactly v(k - s)..v(k) (above), the sync after it loading v(k + 1) and
    #    unloading v(k - s): so every request arriving during step k named one of
    #    v(k - s - 1)..v(k). Counted when they end: none answered by the end of step k named a
    #    version newer than v(k), and every step's version answered requests.
    assert {name for name, _ in final_requests} <= {name for name, _ in loaded}
    assert {status for _, status in final_requests} <= {"ok", "aborted"}  # aborted: the worker's stop
    assert errors == errors_before
    for n in range(1, steps_run + 1):
        assert final_requests.get((version(n), "ok"), 0) > 0, version(n)
    assert probe.snapshots[0][1] == {}
    for step in range(1, steps_run + 1):
        answered = {name for name, _ in probe.snapshots[step][1]}
        assert answered <= {version(n) for n in range(1, step + 1)}, (step, answered)
    # TRL's own account: every step trained on rollouts within its staleness window. (Measured
    # when it pulls them from its queue, which is one batch ahead: accelerate's dispatcher
    # fetches the next batch before yielding this one. With max_staleness 0, step k + 1 trains
    # on v(k)'s rollouts with the trainer at v(k + 1), hence a KL above zero from step 2 on.)
    assert len(steps) == steps_run == len(probe.snapshots) - 1
    assert all(entry["sample/staleness_max"] <= MAX_STALENESS for entry in steps)
    # Step 1's rollouts are v1's, the untrained LoRA (B = 0), and the trainer is still at v1:
    # the server's log-probabilities of them are the trainer's own.
    assert steps[0]["kl"] < 1e-4, steps[0]
    # The version the server answers with is the adapter the trainer trained: the last one's
    # files hold the trainer's LoRA weights, and its answers' log-probabilities are those of
    # transformers + PEFT on those files.
    folder = rl_server.lora_dir / version(last)
    published = load_file(folder / "adapter_model.safetensors")
    live = {name.replace(".default", ""): weight for name, weight in trainer.model.state_dict().items()
            if "lora_" in name}
    assert published.keys() == live.keys()
    assert all(torch.equal(published[name], live[name]) for name in published)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": PROMPTS[0]}],
                                           add_generation_prompt=True, return_dict=False)
    for seed in range(4):
        choice = httpx.post(url + "/v1/completions", timeout=60, json={
            "model": version(last), "prompt": prompt, "max_tokens": ANSWER_TOKENS, "seed": seed,
            "logprobs": 0, "return_token_ids": True}).json()["choices"][0]
        expected = oracle.chosen_logprobs(tiny["base"], prompt, choice["token_ids"], folder)
        expected = [chosen for chosen, _ in expected]
        assert choice["logprobs"]["token_logprobs"] == pytest.approx(expected, abs=1e-4)

    # 3. The reward rose, within MAX_STEPS.
    assert risen(rewards), rewards
