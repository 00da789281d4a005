"""Rollouts through a running server: the policy's LoRA is published to it as a new adapter
version every few steps, responses are generated there, and the KL reference is its base model.

    python -m server --model BASE --adapters ADAPTERS --lora-roots RUN_PARENT &
    python -m training ppo --config training/recipes/rlhf/ppo-demo.yaml --rollout-server http://127.0.0.1:8000

What the trainer asks of the server is vLLM's runtime LoRA API and OpenAI's legacy completions,
so any server that has both can be the rollout engine:
  publish   the adapter is saved under `rollout_publish_dir` as `<name>-v<step>` (written beside,
            then renamed into place), loaded with POST /v1/load_lora_adapter, and the version
            before it unloaded and deleted. The server must read that folder: it is one of its
            `--lora-roots`, on the same machine or a shared filesystem.
  sample    POST /v1/completions with the prompts' token ids and `return_token_ids`, equal
            prompts (a GRPO group) as one prompt with `n`, split over a few requests in flight at
            once, unseeded: each sample independent. Seeded (`rollout_seeded`), each prompt is its
            own request with its own 63-bit seed, so that a run repeats, at a cost: requests, not
            tokens, are what a small model's rollouts spend (benchmarks.md). A response ends with
            its eos, as in-process generation cuts it.
  reference POST /v1/completions on the base model with `echo` and `logprobs: 0`: the log-
            probabilities of the response tokens after their prompt (OpenAI's prompt scoring).
            They are the model's own (temperature 1), so rollouts through a server sample at
            temperature 1, which the KL maths assume anyway.
The key in `rollout_api_key_env` needs management rights (a full key or `manage: true`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

log = logging.getLogger("training")

MAX_IN_FLIGHT = 64
"""Most requests a trainer process has in flight (seeded rollouts: one per prompt)."""


@dataclass
class RolloutServerConfig:
    """Generate rollouts on a running server instead of in the trainer."""

    rollout_server: str = ""
    """URL of a running server (http://HOST:PORT) that generates the rollouts (for ppo, its base
    model also scores the KL reference); empty: the trainer generates them itself."""
    rollout_publish_dir: str = ""
    """Folder where each policy version is written for the server to load: one of the server's
    --lora-roots. Default: RUN/policy-versions."""
    rollout_api_key_env: str = "SERVER_API_KEY"
    """Environment variable holding the server API key (one with management rights); unset: no key."""
    publish_every: int = 1
    """Publish the policy as a new version every this many steps; rollouts in between come from
    the last version published (slightly off-policy; PPO's ratio is taken against the trainer's
    own log-probabilities)."""
    rollout_requests: int = 4
    """Requests a rollout batch is split into, all in flight at once (the server batches them).
    Seeded: one request per prompt, up to 64 in flight."""
    rollout_seeded: bool = False
    """Seed every prompt's sample (one request per prompt), so that a run repeats exactly;
    unseeded, samples are independent draws of the server's generator."""

    def validate(self) -> None:
        if self.publish_every < 1 or self.rollout_requests < 1:
            raise ValueError("rollout: publish_every and rollout_requests must be >= 1")


class RolloutServerError(RuntimeError):
    """The rollout server refused or failed a request; the message has its answer."""


class ServedPolicy:
    """The policy as a running server serves it: publish versions, sample, score the reference."""

    def __init__(self, url: str, folder: Path, name: str, api_key: str | None = None,
                 requests: int = 4, seeded: bool = False, publish_every: int = 1,
                 timeout: float = 600.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout,
                                 limits=httpx.Limits(max_connections=MAX_IN_FLIGHT,
                                                     max_keepalive_connections=MAX_IN_FLIGHT))
        # Absolute: the server reads a relative path as relative to its adapters directory.
        self.folder, self.name, self.requests = Path(folder).resolve(), name, requests
        self.folder.mkdir(parents=True, exist_ok=True)
        models = self._call("GET", "/v1/models")["data"]
        if not models:
            raise RolloutServerError(f"{url} lists no models for this key: it needs the base model")
        self.base = models[0]["id"]  # vLLM's convention: the base model first
        self.version: str | None = None
        self.published = 0
        self.seeded = seeded  # whether trainers seed each prompt's sample (rollout_seeded)
        self.publish_every = publish_every
        self._synced_at: int | None = None  # the step of the version now served

    @classmethod
    def from_config(cls, config: RolloutServerConfig, run_dir: Path, name: str) -> "ServedPolicy":
        folder = Path(config.rollout_publish_dir) if config.rollout_publish_dir else run_dir / "policy-versions"
        return cls(config.rollout_server, folder, name, os.environ.get(config.rollout_api_key_env) or None,
                   config.rollout_requests, config.rollout_seeded, config.publish_every)

    def _call(self, method: str, path: str, retries: int = 0, **kwargs):
        """`retries`: times to resend a request that got no answer at all (a kept-alive connection
        the server closed as it was reused); only for requests that may run twice."""
        for attempt in range(retries + 1):
            try:
                r = self.http.request(method, path, **kwargs)
                break
            except (httpx.RemoteProtocolError, httpx.ConnectError) as exc:
                if attempt == retries:
                    raise RolloutServerError(f"rollout server {self.http.base_url}: {exc}") from exc
                log.warning("rollout server: no answer to %s %s (%s); sending it again", method, path, exc)
            except httpx.HTTPError as exc:
                raise RolloutServerError(f"rollout server {self.http.base_url}: {exc}") from exc
        if r.status_code >= 400:
            raise RolloutServerError(f"rollout server {method} {path}: {r.status_code} {r.text[:500]}")
        return r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text

    def sync(self, model, step: int, write: bool = True) -> bool:
        """At the first step and every `publish_every` steps after, serve `model` as version
        `step`: publish it (`write`), or, in a process beside the one that does, only follow the
        version's name. Returns whether the version changed."""
        if self._synced_at is not None and step - self._synced_at < self.publish_every:
            return False
        if write:
            self.publish(model, step)
        else:
            self.version = f"{self.name}-v{step}"
        self._synced_at = step
        return True

    def publish(self, model, step: int) -> str:
        """Save `model`'s adapter (a PeftModel) as version `step`, load it, drop the one before."""
        name = f"{self.name}-v{step}"
        final, staging = self.folder / name, self.folder / f".{name}.writing"
        shutil.rmtree(staging, ignore_errors=True)
        model.save_pretrained(staging)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)  # the server never sees a half-written folder
        self._call("POST", "/v1/load_lora_adapter", json={"lora_name": name, "lora_path": str(final)})
        previous, self.version = self.version, name
        if previous is not None:
            self._call("POST", "/v1/unload_lora_adapter", json={"lora_name": previous})
            shutil.rmtree(self.folder / previous, ignore_errors=True)
        self.published += 1
        return name

    def _complete(self, bodies: list[dict]) -> list[list[dict]]:
        """The choices of each completion request, sorted, with `requests` of them in flight."""
        def run(body: dict) -> list[dict]:
            answer = self._call("POST", "/v1/completions", retries=2, json=body)
            return sorted(answer["choices"], key=lambda c: c["index"])

        with ThreadPoolExecutor(max(1, min(len(bodies), MAX_IN_FLIGHT))) as pool:
            return list(pool.map(run, bodies))

    def sample(self, prompts: list[list[int]], max_tokens: int, temperature: float = 1.0, greedy: bool = False,
               seed: int | None = None, logprobs: bool = False) -> tuple[list[list[int]], list[list[float]] | None]:
        """Response token ids of the current version, one per prompt (ending with eos if one came),
        and, if asked (it costs the server ~30% here), the log-probability of each token as it was
        sampled. `seed`: one request per prompt, each seeded from it (a repeatable run); None:
        batched, unseeded."""
        if self.version is None:
            raise RolloutServerError("no policy version is published yet")
        common = {"model": self.version, "max_tokens": max_tokens, "top_p": 1.0,
                  "temperature": 0.0 if greedy else temperature, "return_token_ids": True,
                  **({"logprobs": 0} if logprobs else {})}
        if seed is not None:
            seeds = random.Random(seed)
            bodies = [{**common, "prompt": ids, "seed": seeds.getrandbits(63)} for ids in prompts]
            choices = [c[0] for c in self._complete(bodies)]
        else:
            choices = self._batched(prompts, common)
        return ([c["token_ids"] for c in choices],
                [c["logprobs"]["token_logprobs"] for c in choices] if logprobs else None)

    def _batched(self, prompts: list[list[int]], common: dict) -> list[dict]:
        """One choice per prompt: equal prompts asked once with `n` (requests of equal `n`; not
        greedy, where vLLM refuses n > 1), each request a share of the batch."""
        where: dict[tuple[int, ...], list[int]] = {}
        for i, ids in enumerate(prompts):
            where.setdefault((i,) if common["temperature"] == 0 else tuple(ids), []).append(i)
        by_n: dict[int, list[tuple[int, ...]]] = {}
        for key, places in where.items():
            by_n.setdefault(len(places), []).append(key)
        bodies, asked = [], []
        for n, keys in by_n.items():
            size = -(-len(keys) // self.requests)
            for start in range(0, len(keys), size):
                chunk = keys[start:start + size]
                bodies.append({**common, "prompt": [prompts[where[key][0]] for key in chunk], "n": n})
                asked.append((chunk, n))
        out: list[dict] = [{}] * len(prompts)
        for (chunk, n), choices in zip(asked, self._complete(bodies)):
            for c in choices:  # index = prompt's place in the request * n + sample
                out[where[chunk[c["index"] // n]][c["index"] % n]] = c
        assert all(out), "the server answered fewer choices than asked"
        return out

    def reference_logprobs(self, prompts: list[list[int]], responses: list[list[int]]) -> list[list[float]]:
        """Log-probabilities of each response's tokens after its prompt, under the base model."""
        scored = [p + r for p, r in zip(prompts, responses)]
        size = -(-len(scored) // self.requests)
        bodies = [{"model": self.base, "prompt": scored[i:i + size], "max_tokens": 1, "temperature": 0.0,
                   "echo": True, "logprobs": 0} for i in range(0, len(scored), size)]
        choices = [c for chunk in self._complete(bodies) for c in chunk]
        return [c["logprobs"]["token_logprobs"][len(p):len(p) + len(r)]
                for c, p, r in zip(choices, prompts, responses)]

    def close(self, unload: bool = True) -> None:
        """Unload the last version (the server keeps serving everything else) and close."""
        if unload and self.version is not None:
            try:
                self._call("POST", "/v1/unload_lora_adapter", json={"lora_name": self.version})
            except RolloutServerError as exc:
                log.warning("rollout server: could not unload %s: %s", self.version, exc)
            shutil.rmtree(self.folder / self.version, ignore_errors=True)
            self.version = None
        self.http.close()


@contextlib.contextmanager
def started_server(model: Path, adapters: Path, lora_root: Path, log_path: Path, *flags: str,
                   timeout: float = 900.0) -> Iterator[str]:
    """A server (`python -m server`) on `model` for the length of a run, loading policy versions
    from under `lora_root`; yields its URL. Without an API key: it listens on 127.0.0.1 only."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    adapters.mkdir(parents=True, exist_ok=True)
    lora_root.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "server", "--model", str(model), "--adapters", str(adapters), "--host",
           "127.0.0.1", "--port", str(port), "--lora-roots", str(lora_root.resolve()), *flags]
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while not _healthy(url):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RolloutServerError(f"the rollout server did not start; see {log_path}")
                time.sleep(1)
            log.warning("rollout server: %s on %s (log: %s)", url, model, log_path)
            yield url
        finally:
            proc.send_signal(signal.SIGTERM)  # drains, then exits
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False
