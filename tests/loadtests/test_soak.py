"""The soak driver, briefly, against the session's server: overload at twice the measured rate
while adapters are published, republished under load and deleted. Every request is answered
(the server's count of answered requests equals the clients' count of 200s), nothing fails, every churn probe sees the
change. The long run, with a queue limit and RSS figures, is in loadtests/RESULTS.md."""

from __future__ import annotations

import json

from loadtests import soak
from tests.conftest import API_KEY


def test_short_soak_with_adapter_churn(server, tiny, tmp_path):
    out = tmp_path / "soak"
    code = soak.main([
        "--url", server.url, "--adapters", str(server.adapters), "--base", str(tiny["base"]),
        "--api-key", API_KEY, "--mix", "base,lora-a,prompt-a,lora-a+prompt-a,hot",
        "--sources", "lora-a,lora-b", "--duration", "12", "--saturation-seconds", "5",
        "--saturation-users", "4", "--users", "8", "--churn-every", "2", "--max-tokens", "8",
        "--out", str(out)])
    report = json.loads((out / "report.json").read_text())
    assert code == 0, (out / "report.md").read_text()
    assert report["soak"]["ok"] > 0 and report["churn"]["replaced"] >= 3
    assert report["churn"]["deleted"] >= 2
    assert report["soak"]["server"]["ok"] == report["soak"]["clients"]["ok"] > report["soak"]["ok"]
    assert not (server.adapters / soak.HOT).exists()  # the driver leaves the folder as it was
