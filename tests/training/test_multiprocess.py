"""Training on 2 CPU processes (gloo), launched the way a user launches it (accelerate launch, torchrun).

The LoRA adapter of 2 processes x per-process batch 2 must equal, within TOLERANCE, the adapter of
1 process x batch 4 (same seed, data order and global batch, dropout 0); PPO on 2 processes must
end with bit-identical weights in both (gradients all-reduced), and only the main process writes.
CUDA is hidden from the launched processes, so this runs the same on a GPU machine. Each test
takes ~30-80 s on 2 busy cores, most of it importing torch/transformers in 3 processes.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from training.recipe import load_recipe
from training.rlhf.commands import run, sections_of
from training.rlhf.demo_data import write_demo_preferences
from training.tiny import build_base_model

REPO = Path(__file__).resolve().parents[2]
# Max |1-process - 2-process| over every LoRA weight after 3 steps. Measured: 2.6e-5 (this 2-core
# AVX2 machine). Float32 sums the two halves' gradients in another order than one batch of 4, and
# Adam divides each gradient by its running RMS, which magnifies those last-bit differences for
# the smallest gradients. A wrong global batch (1 process x 2) ends 2.5e-2 away.
TOLERANCE = 1e-4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(argv: list[str], log: Path) -> subprocess.Popen:
    """A training command on the CPU: CUDA hidden, one thread per process (the cores are shared)."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1",
           "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, *argv], cwd=REPO, env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)


def finish(proc: subprocess.Popen, log: Path, timeout: float = 600) -> str:
    rc = proc.wait(timeout=timeout)
    text = log.read_text(errors="replace")
    assert rc == 0, f"{' '.join(map(str, proc.args))} exited {rc}:\n{text[-4000:]}"
    return text


def torchrun(*args: str) -> list[str]:
    return ["-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()),
            "-m", "training", *args]


def write_recipe(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return build_base_model(tmp_path_factory.mktemp("mp") / "base", spec="test")


def test_two_processes_train_the_lora_of_one_with_the_same_global_batch(base, reverse_data, tmp_path):
    recipe = write_recipe(tmp_path / "lora.yaml", {
        "model": {"base": str(base), "dtype": "float32"},
        "data": {"train": str(reverse_data), "max_length": 64},
        "train": {"max_steps": 3, "learning_rate": 1e-2, "logging_steps": 1, "save_steps": 100, "threads": 1,
                  "progress": False, "seed": 0, "bf16": False},
        "lora": {"rank": 4, "dropout": 0.0},
        "output": {"name": "mp-lora", "evaluate": False},
    })
    common = ["lora", "--config", str(recipe)]
    one = launch(["-m", "training", *common, "--output-dir", str(tmp_path / "one"), "--batch-size", "4"],
                 tmp_path / "one.log")
    two = launch(["-m", "accelerate.commands.launch", "--config_file", "training/accelerate/ddp.yaml",
                  "--num_processes", "2", "--main_process_port", str(free_port()),
                  "-m", "training", *common, "--output-dir", str(tmp_path / "two"), "--batch-size", "2"],
                 tmp_path / "two.log")
    finish(one, tmp_path / "one.log")
    log = finish(two, tmp_path / "two.log")

    assert log.count("lora: wrote") == 1  # the main process only; the other waited at the barrier
    run_json = json.loads((tmp_path / "two" / "run.json").read_text())
    assert run_json["training"]["processes"] == 2 and run_json["training"]["steps"] == 3
    a, b = (load_file(tmp_path / r / "adapter" / "adapter_model.safetensors") for r in ("one", "two"))
    assert a.keys() == b.keys()
    difference = max((a[k] - b[k]).abs().max().item() for k in a)
    print(f"max |1 process - 2 processes| = {difference:.2e} (tolerance {TOLERANCE:.0e})")
    assert difference <= TOLERANCE
    # ...while training moved the weights far more than that (lora_B starts at zero).
    assert min(a[k].abs().max().item() for k in a if "lora_B" in k) > 100 * TOLERANCE


@pytest.fixture(scope="module")
def reward_model(base, tmp_path_factory):
    """Preference files and a reward model trained for 1 step (PPO only needs something to score with)."""
    root = tmp_path_factory.mktemp("mp-rlhf")
    prefs = write_demo_preferences(root, n_train=48, n_test=8, n_sft=1)
    recipe = load_recipe("reward", sections_of("reward"), {
        "model": {"base": str(base), "dtype": "float32"},
        "data": {"train": str(prefs["train"]), "test": str(prefs["test"])},
        "train": {"output_dir": str(root / "reward"), "max_steps": 1, "batch_size": 8, "save_steps": 1000,
                  "progress": False},
        "lora": {"rank": 4, "dropout": 0.0},
        "output": {"evaluate": False},
    })
    return prefs, Path(run("reward", recipe)["artifact"])


def test_ppo_on_two_processes_keeps_identical_weights_and_only_the_main_one_writes(base, reward_model, tmp_path):
    prefs, reward = reward_model
    recipe = write_recipe(tmp_path / "ppo.yaml", {
        "model": {"base": str(base), "dtype": "float32"},
        "data": {"train": str(prefs["train"]), "test": str(prefs["test"])},
        "train": {"output_dir": str(tmp_path / "ppo"), "max_steps": 2, "batch_size": 4, "learning_rate": 1e-2,
                  "logging_steps": 1, "threads": 1, "progress": False, "bf16": False},
        "lora": {"rank": 4, "alpha": 8, "dropout": 0.0},
        "reward": {"reward_model": str(reward)},
        "rollout": {"response_length": 8},
        "ppo": {"rollout_batch": 8, "ppo_epochs": 2},
        "output": {"name": "mp-ppo", "evaluate": False},
    })
    log = finish(launch(torchrun("ppo", "--config", str(recipe)), tmp_path / "ppo.log"), tmp_path / "ppo.log")

    # Each process samples its own rollouts, so only the all-reduced gradients keep them equal.
    held = dict(re.findall(r"ppo: process (\d) of 2 holds weights sha256:(\w+)", log))
    assert set(held) == {"0", "1"} and held["0"] == held["1"]
    assert log.count("ppo: wrote") == 1 and log.count("ppo 2/2:") == 1  # the main process writes and logs
    run_json = json.loads((tmp_path / "ppo" / "run.json").read_text())
    assert run_json["training"]["processes"] == 2 and run_json["training"]["rollouts_per_iteration"] == 16
    weights = load_file(tmp_path / "ppo" / "adapter" / "adapter_model.safetensors")
    assert any(w.abs().sum() > 0 for k, w in weights.items() if "lora_B" in k)  # trained (B starts at zero)
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert (tmp_path / "ppo" / "value_head.safetensors").is_file()
