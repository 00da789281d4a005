"""Prompt scoring with LoRA: which of the step's tokens a slice handed to the lm_head is."""

from __future__ import annotations

import torch

from server.in_engine.lora_ops import punica


def test_a_slice_of_the_scored_step_is_found_and_nothing_else():
    step = torch.randn(12, 8)
    assert punica.step_rows(step[3:7]) is None  # outside prompt scoring: the sampler's rows
    with punica._scoring(step):
        assert punica.step_rows(step[3:7]) == slice(3, 7)
        assert punica.step_rows(step[0:12]) == slice(0, 12)
        assert punica.step_rows(step[3:7].clone()) is None  # a copy is not the step's rows
        assert punica.step_rows(torch.randn(4, 8)) is None
        assert punica.step_rows(step[:, :4]) is None  # not whole rows
    assert punica.step_rows(step[3:7]) is None and not punica._scored_steps


def test_the_runner_method_is_wrapped_and_restores_the_state_on_error():
    seen = []

    def original(runner, hidden_states, num_scheduled_tokens):
        seen.append(punica.step_rows(hidden_states[2:5]))
        raise RuntimeError("engine error")

    wrapped = punica.scoring_prompts(original)
    assert wrapped.__wrapped__ is original
    try:
        wrapped(object(), torch.randn(6, 4), {"r": 6})
    except RuntimeError:
        pass
    assert seen == [slice(2, 5)] and not punica._scored_steps
