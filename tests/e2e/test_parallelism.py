"""The parallelism flags on a real server: `--tensor-parallel-size 2`, `--pipeline-parallel-size 2`
and `--data-parallel-size 2` each serve base and LoRA requests with the outputs of transformers +
PEFT (greedy, float32), on this one-NUMA-node CPU machine without any environment set by hand
(the server shares the cores out among a tensor or pipeline group's workers: server/engine.py).

Three extra servers, one at a time (20-60 s each to start on two cores).
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import oracle
from tests.conftest import API_KEY, ServerProcess
from tests.e2e.test_lora_matches_peft import MAX_NEW, PROMPTS, served_ids

FLAGS = {"tp2": ("--tensor-parallel-size", "2"), "pp2": ("--pipeline-parallel-size", "2"),
         "dp2": ("--data-parallel-size", "2")}


@pytest.fixture(scope="module", params=list(FLAGS))
def parallel_server(request, tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    adapters = root / "adapters"
    adapters.mkdir()
    shutil.copytree(tiny["lora-a"], adapters / "lora-a")
    # pp2 runs compiled: vLLM's CPU runner cannot run a pipeline eagerly (server.engine refuses it).
    proc = ServerProcess(tiny["base"], adapters, root / "server.log", "--served-model-name", "base",
                         *FLAGS[request.param], compiled=request.param == "pp2")
    proc.name = request.param
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def test_base_and_lora_match_peft(parallel_server, tiny):
    client = openai.OpenAI(base_url=parallel_server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=120)
    tok = oracle.tokenizer(tiny["base"])
    jobs = [(model, tok.encode(p)) for p in PROMPTS for model in ("lora-a", "base")]
    with ThreadPoolExecutor(len(jobs)) as pool:  # concurrent: one batch, and both DP engines
        served = list(pool.map(lambda job: served_ids(client, *job), jobs))
    for (model, ids), got in zip(jobs, served):
        adapters = () if model == "base" else (tiny[model],)
        assert got == oracle.greedy(tiny["base"], ids, MAX_NEW, *adapters), (parallel_server.name, model)
    if parallel_server.name == "dp2":
        # Both engine replicas answered some of them (vLLM balances by their queues).
        metrics = httpx.get(parallel_server.url + "/metrics", timeout=30).text
        engines = {s.labels["engine"] for family in text_string_to_metric_families(metrics)
                   if family.name == "vllm:request_success" for s in family.samples
                   if s.name.endswith("_total") and s.value > 0}
        assert engines == {"0", "1"}, metrics
