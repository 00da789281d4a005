"""The example accelerate configs (training/accelerate/) parse, start with the command that uses them,
and name a distributed type accelerate knows."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DistributedType

CONFIGS = sorted(Path(__file__).resolve().parents[2].joinpath("training", "accelerate").glob("*.yaml"))


def test_there_are_ddp_fsdp_and_zero3_configs():
    assert {p.name for p in CONFIGS} >= {"ddp.yaml", "fsdp.yaml", "deepspeed-zero3.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_parses_names_a_distributed_type_and_starts_with_its_command(path):
    raw = yaml.safe_load(path.read_text())
    assert raw["distributed_type"] in {t.value for t in DistributedType}
    first = path.read_text().splitlines()[0]
    assert first.startswith(f"# accelerate launch --config_file training/accelerate/{path.name} ")
    assert " -m training " in first
    config = load_config_from_file(str(path))  # accelerate's own reader: unknown keys would fail here
    assert config.distributed_type == DistributedType(raw["distributed_type"])
