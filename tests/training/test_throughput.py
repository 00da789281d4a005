"""training.throughput on the CPU with the tiny spec, and the table's arithmetic (the 1B run: scripts/gpu-check)."""

from __future__ import annotations

import pytest

from training.throughput import PEAK_BF16_TFLOPS, Result, main, measure


def test_measures_tokens_per_second_and_mfu_on_a_tiny_model(capsys):
    result = measure("test", "cpu", batch_size=2, seq_len=16, steps=2, warmup=1, peak=1.0,
                     gradient_checkpointing=True)
    assert result.tokens_per_second == pytest.approx(2 * 16 * 2 / result.seconds)
    assert result.mfu == pytest.approx(6 * result.parameters * result.tokens_per_second / 1e12)
    assert 0 < result.trainable < result.parameters and result.peak_memory is None
    assert main(["--device", "cpu", "--spec", "test", "--steps", "1", "--warmup", "0", "--batch-size", "1",
                 "--seq-len", "8"]) == 0
    table = capsys.readouterr().out
    assert "| tokens/s" in table and "MFU" in table and "pass --peak-tflops" in table  # CPU: no known peak


def test_mfu_is_six_n_tokens_over_peak():
    r = Result("GPU", parameters=1_000_000_000, trainable=1, batch_size=8, seq_len=1000, steps=10, seconds=1.0,
               peak_memory=2**30, peak_tflops=1000.0, gradient_checkpointing=False)
    assert r.tokens_per_second == 80_000 and r.mfu == pytest.approx(6e9 * 8e4 / 1e15)
    assert "48.0%" in r.table() and "1.0 GiB" in r.table()
    assert dict(PEAK_BF16_TFLOPS)["H100"] == 989.0
