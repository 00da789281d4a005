"""Few-step reward / PPO / DPO / GRPO runs on the tiny float32 base, and one aligned adapter served.

Each policy run must leave the base weights as they are on disk, change the LoRA weights (B
starts at zero), report finite losses, and save a plain LoRA the session server hot-loads.
"""

from __future__ import annotations

import json
import math
import re

import httpx
import pytest
import torch
from peft import get_peft_model
from safetensors.torch import load_file

from training.recipe import load_recipe
from training.rlhf.commands import run, sections_of
from training.rlhf.common import changed_base_weights
from training.rlhf.demo_data import write_demo_preferences

FAST = {
    "reward": {"train": {"max_steps": 6, "learning_rate": 3e-3}},
    "ppo": {"train": {"max_steps": 2, "batch_size": 4, "learning_rate": 1e-2},
            "ppo": {"rollout_batch": 8, "ppo_epochs": 2}, "rollout": {"response_length": 8}},
    "dpo": {"train": {"max_steps": 3, "learning_rate": 1e-2}},
    "grpo": {"train": {"max_steps": 2, "learning_rate": 1e-2}, "grpo": {"num_generations": 4},
             "rollout": {"response_length": 8}},
}


def recipe(command, base, data, out, reward=None, **sections):
    values = {
        "model": {"base": str(base)},
        "data": {"train": str(data["train"]), "test": str(data["test"])},
        "train": {"output_dir": str(out), "batch_size": 8, "logging_steps": 1, "save_steps": 1000, "progress": False},
        "lora": {"rank": 8, "alpha": 16, "dropout": 0.0},
        "output": {"name": out.name, "evaluate": False},
    }
    if reward:
        values["reward"] = {"reward_model": str(reward)}
    for name, extra in {**FAST[command], **sections}.items():
        values.setdefault(name, {}).update(extra)
    return load_recipe(command, sections_of(command), values)


@pytest.fixture(scope="module")
def prefs(tmp_path_factory):
    return write_demo_preferences(tmp_path_factory.mktemp("prefs"), n_train=64, n_test=12, n_sft=1)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tmp_path_factory.mktemp("rlhf-runs")


@pytest.fixture(scope="module")
def reward_run(tiny, prefs, runs):
    return run("reward", recipe("reward", tiny["base"], prefs, runs / "reward"))


def lora_b_norm(adapter_dir) -> float:
    weights = load_file(adapter_dir / "adapter_model.safetensors")
    return sum(w.abs().sum().item() for k, w in weights.items() if "lora_B" in k)


def test_reward_model_trains_and_scores(reward_run):
    from training.rlhf.reward import RewardScorer

    training = reward_run["training"]
    assert math.isfinite(training["train_loss"])
    assert 0 <= training["heldout_pairwise_accuracy"] <= 1
    weights = load_file(f"{reward_run['artifact']}/adapter_model.safetensors")
    assert any("score" in k for k in weights)  # the scalar head is saved with the LoRA
    scorer = RewardScorer(reward_run["artifact"])
    scores = scorer.score(["<|user|>\nHi</s>\n<|assistant|>\n"] * 2, ["Sure! Hello.", "Ugh. Go away."])
    assert scores.shape == (2,) and torch.isfinite(scores).all()


def test_ppo_trainer_steps_move_only_the_adapter(tiny, prefs, reward_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.rlhf.common import RolloutConfig
    from training.rlhf.ppo.trainer import PPOOptions, PPOTrainer
    from training.rlhf.reward import RewardScorer
    from training.methods.lora import LoraOptions, lora_config

    tok = AutoTokenizer.from_pretrained(tiny["base"])
    policy = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny["base"], dtype=torch.float32),
                            lora_config(LoraOptions(rank=8, dropout=0.0)))
    trainer = PPOTrainer(policy, tok, RewardScorer(reward_run["artifact"]), ["<|user|>\nHi</s>\n<|assistant|>\n"],
                         PPOOptions(rollout_batch=4, ppo_epochs=2, kl_target=1.0, kl_horizon=100),
                         RolloutConfig(response_length=6), learning_rate=1e-2, batch_size=2)
    lora_before = {n: p.detach().clone() for n, p in policy.named_parameters() if p.requires_grad}
    first = trainer.step()
    assert first["kl"] == pytest.approx(0.0, abs=1e-5)  # LoRA B starts at zero: π = π_ref
    second = trainer.step()
    assert all(math.isfinite(v) for v in (*first.values(), *second.values()))
    assert second["kl"] != 0.0  # the adapter moved the policy away from the reference
    assert second["kl_coef"] != first["kl_coef"]  # adaptive β reacted to the measured KL
    assert any(not torch.equal(p, lora_before[n]) for n, p in policy.named_parameters() if p.requires_grad)
    assert changed_base_weights(policy, tiny["base"]) == []


@pytest.mark.parametrize("command", ["ppo", "grpo"])
def test_online_runs_generate_through_a_rollout_server(command, tiny, prefs, runs, reward_run, server, monkeypatch):
    """`--rollout-server`: a version per step published to the session server, each loaded, the
    stale one unloaded, none left behind; the run's adapter is trained as in-process."""
    from tests.conftest import API_KEY

    monkeypatch.setenv("TEST_ROLLOUT_KEY", API_KEY)
    versions = server.trainer_dir / f"runs-{command}"
    summary = run(command, recipe(command, tiny["base"], prefs, runs / f"served-{command}", reward=reward_run["artifact"],
                                  server={"rollout_server": server.url, "rollout_publish_dir": str(versions),
                                          "rollout_api_key_env": "TEST_ROLLOUT_KEY"}))
    training = summary["training"]
    name = f"served-{command}"
    assert training["rollout_server"] == server.url and training["versions_published"] == 2
    log = server.log.read_text()
    assert re.findall(rf"adapter ({name}-v\d+) v\d+ \(lora\) ready", log) == [f"{name}-v1", f"{name}-v2"]
    served = httpx.get(server.url + "/v1/models", headers={"Authorization": f"Bearer {API_KEY}"}).json()["data"]
    assert not [m["id"] for m in served if m["id"].startswith(name)]  # all unloaded
    assert not list(versions.iterdir())  # and deleted
    assert lora_b_norm(__import__("pathlib").Path(summary["artifact"])) > 0


@pytest.fixture(scope="module")
def policies(tiny, prefs, runs, reward_run):
    done = {}
    for command in ("ppo", "dpo", "grpo"):
        done[command] = run(command, recipe(command, tiny["base"], prefs, runs / f"aligned-{command}",
                                            reward=reward_run["artifact"]))
    return done


@pytest.mark.parametrize("command", ["ppo", "dpo", "grpo"])
def test_policy_run_saves_a_servable_changed_lora(command, policies, tiny):
    summary = policies[command]
    adapter = summary["artifact"]
    config = json.loads(open(f"{adapter}/adapter_config.json").read())
    assert config["peft_type"] == "LORA" and not config.get("modules_to_save") and not config.get("use_dora")
    assert lora_b_norm(__import__("pathlib").Path(adapter)) > 0  # B was zero at init
    loss = summary["training"].get("train_loss", summary["training"].get("final_score"))
    assert math.isfinite(loss)
    run_json = json.loads(open(f"{summary['artifact']}/../run.json").read())
    assert run_json["method"] == command and run_json["produces"] == "adapter"


def test_aligned_adapter_is_served(policies, server, client):
    from training.publish import publish_run

    names = {command: publish_run(f"{policies[command]['artifact']}/..", adapters_dir=server.adapters).name
             for command in ("ppo", "dpo", "grpo")}
    manifest = json.loads((server.adapters / names["ppo"] / "manifest.json").read_text())
    assert manifest["method"] == "ppo" and "final_kl" in manifest["training"]
    served = {m.id for m in client.models.list().data}
    for name in names.values():
        assert name in served
        r = client.completions.create(model=name, prompt="<|user|>\nUppercase: red fish tree</s>\n<|assistant|>\n",
                                      max_tokens=6, temperature=0)
        assert r.choices[0].text
