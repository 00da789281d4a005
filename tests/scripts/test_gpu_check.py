"""scripts/gpu-check on a machine without CUDA (or with it hidden): says so, exits 0, runs nothing heavy."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu-check"


def test_without_cuda_it_says_so_and_exits_0_quickly():
    assert os.access(SCRIPT, os.X_OK)
    started = time.monotonic()
    done = subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable})
    assert done.returncode == 0, done.stderr
    assert "no CUDA device" in done.stdout and "nothing to check" in done.stdout
    assert "training tests" not in done.stdout and "throughput" not in done.stdout.lower()
    assert time.monotonic() - started < 60  # one `import torch`, nothing else
