"""End to end: train on the session's base, publish into the running server, call it with openai.

The server (tests/conftest.py, one per session) hot-loads adapters from `server.adapters`; its
greedy output with the new adapter must equal PEFT's on the same files, and differ from base.
"""

from __future__ import annotations

import pytest

from tests import oracle
from tests.training.conftest import make_recipe
from training.methods import METHODS
from training.methods.common import train
from training.publish import publish_run
from training.templates import ALPACA

PROMPTS = ["Reverse the word: garden", "Reverse the word: tiger"]
MAX_NEW = 12


@pytest.fixture(scope="module")
def published(tiny, server, reverse_data, tmp_path_factory):
    runs = tmp_path_factory.mktemp("served-runs")
    names = {}
    for command, extra in (("lora", {"train": {"max_steps": 12}}),
                           ("prompt_tuning", {"train": {"max_steps": 12, "learning_rate": 0.1}})):
        out = runs / f"trained-{command.replace('_', '-')}"
        train(make_recipe(command, tiny["base"], reverse_data, out, **extra), METHODS[command])
        names[command] = publish_run(out, adapters_dir=server.adapters).name
    return names


def served_ids(client, model, prompt, **extra):
    r = client.completions.create(model=model, prompt=prompt, max_tokens=MAX_NEW, temperature=0,
                                  extra_body={"return_token_ids": True, **extra})
    return r.choices[0].model_extra["token_ids"]


@pytest.mark.parametrize("command", ["lora", "prompt_tuning"])
def test_published_adapter_is_served_and_matches_peft(command, published, client, server, tiny):
    name = published[command]
    assert name in {m.id for m in client.models.list().data}
    tok = oracle.tokenizer(tiny["base"])
    for instruction in PROMPTS:
        prompt = ALPACA.replace("{prompt}", instruction)
        got = served_ids(client, name, prompt)
        assert got == oracle.greedy(tiny["base"], tok(prompt).input_ids, MAX_NEW, server.adapters / name)
        assert got != served_ids(client, "base", prompt)
        # The manifest's template, applied by the server on request, gives the training-time prompt.
        assert served_ids(client, name, instruction, use_adapter_template=True) == got
