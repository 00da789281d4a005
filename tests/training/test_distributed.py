"""training.distributed in a single process (the multi-process behaviour: tests/training/test_multiprocess.py)."""

from __future__ import annotations

import pytest
import torch

from training import distributed


def test_a_single_process_is_the_main_one_and_does_the_work():
    assert distributed.is_main() and distributed.process_count() == 1
    assert distributed.on_main_then_wait(lambda: "saved") == "saved"
    with pytest.raises(ValueError):  # an error on the main process still reaches the barrier, then propagates
        distributed.on_main_then_wait(lambda: (_ for _ in ()).throw(ValueError("disk full")))


def test_fingerprint_tells_apart_weights_one_ulp_apart():
    a = [torch.ones(3), torch.zeros(2)]
    b = [torch.ones(3), torch.tensor([0.0, torch.finfo(torch.float32).tiny])]
    assert distributed.fingerprint(a) == distributed.fingerprint([t.clone() for t in a])
    assert distributed.fingerprint(a) != distributed.fingerprint(b)
    assert distributed.check_same_weights(a) == distributed.fingerprint(a)


def test_an_unsharded_trainer_saves_from_its_in_memory_model():
    class Trainer:
        is_fsdp_enabled = is_deepspeed_enabled = False

    assert not distributed.sharded(Trainer()) and distributed.full_state_dict(Trainer()) is None
