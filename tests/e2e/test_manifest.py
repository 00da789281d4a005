"""Adapters published with a manifest: base-model identity checked, prompt template applied."""

from __future__ import annotations

import shutil


from adapter_formats.manifest import base_model_identity, write_manifest
from tests.e2e.helpers import publish
from tests.e2e.test_bad_input import OK_COMPLETION, assert_error

TEMPLATE = "### Instruction:\n{prompt}\n\n### Response:\n"


def test_adapter_template_is_applied_on_request(client, http, server, tiny, tmp_path):
    src = tmp_path / "templated"
    shutil.copytree(tiny["lora-a"], src)
    write_manifest(src, {"name": "templated", "method": "lora",
                         "base_model": {"identity": base_model_identity(tiny["base"])},
                         "prompt_template": {"name": "alpaca", "template": TEMPLATE}})
    publish(src, server.adapters, "templated")

    kw = dict(model="templated", max_tokens=8, temperature=0)
    wrapped = client.completions.create(prompt=TEMPLATE.replace("{prompt}", "Reverse: cat"), **kw)
    asked = client.completions.create(prompt="Reverse: cat", **kw,
                                      extra_body={"use_adapter_template": True})
    plain = client.completions.create(prompt="Reverse: cat", **kw)
    assert asked.choices[0].text == wrapped.choices[0].text
    assert asked.usage.prompt_tokens == wrapped.usage.prompt_tokens > plain.usage.prompt_tokens

    chat = dict(model="templated", max_tokens=8, temperature=0)
    by_hand = client.chat.completions.create(
        messages=[{"role": "user", "content": TEMPLATE.replace("{prompt}", "hi")}], **chat)
    by_flag = client.chat.completions.create(messages=[{"role": "user", "content": "hi"}], **chat,
                                             extra_body={"use_adapter_template": True})
    assert by_flag.choices[0].message.content == by_hand.choices[0].message.content

    info = {a["name"]: a for a in http.get("/v1/adapters").json()["data"]}["templated"]
    assert info["manifest"]["prompt_template"]["name"] == "alpaca"


def test_template_requested_without_one_is_400(http):
    assert_error(http.post("/v1/completions", json={**OK_COMPLETION, "model": "lora-a",
                                                    "use_adapter_template": True}),
                 400, param="use_adapter_template", contains="no prompt template")
