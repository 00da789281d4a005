"""Prompt templates: how an example's prompt becomes the text the model is trained (and served) on.

A template is one string with a single `{prompt}` placeholder, the same contract as the
manifest's `prompt_template` that the server applies on request (`use_adapter_template`).
So what the adapter saw in training is exactly what the server sends it.

    alpaca  "### Instruction:\\n{prompt}\\n\\n### Response:\\n"   (Alpaca / Dolly style)
    raw     "{prompt}"                                         (prompt/completion data as is)
    chat    the tokenizer's own chat template (one user turn, then the assistant's answer)
    any string containing {prompt}, named by `template_name`   (user-defined, in the recipe)

For Alpaca rows with an `input`, the prompt is `instruction + "\\n\\n### Input:\\n" + input`, so
the server-side template (one placeholder) still reproduces the training text.
"""

from __future__ import annotations

from dataclasses import dataclass

ALPACA = "### Instruction:\n{prompt}\n\n### Response:\n"
BUILTIN = {"alpaca": ALPACA, "raw": "{prompt}"}
CHAT = "chat"


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    template: str
    """Text around `{prompt}`; for `chat` it is "{prompt}" and the tokenizer's chat template applies."""

    @property
    def uses_chat_template(self) -> bool:
        return self.name == CHAT

    def render(self, prompt: str) -> str:
        # str.replace, not str.format: prompts and templates may contain other braces (code, JSON).
        return self.template.replace("{prompt}", prompt)

    def manifest(self) -> dict[str, str]:
        return {"name": self.name, "template": self.template}


def resolve_template(spec: str, name: str | None = None) -> PromptTemplate:
    """`alpaca`, `raw`, `chat`, or a custom template string with exactly one `{prompt}`."""
    if spec == CHAT:
        return PromptTemplate(CHAT, "{prompt}")
    if spec in BUILTIN:
        return PromptTemplate(spec, BUILTIN[spec])
    if spec.count("{prompt}") != 1:
        raise ValueError(
            f"template {spec!r} is neither a built-in ({sorted([*BUILTIN, CHAT])}) nor a string with "
            "exactly one {prompt} placeholder")
    return PromptTemplate(name or "custom", spec)


def join_instruction(instruction: str, input_text: str | None) -> str:
    """The prompt of an Alpaca/Dolly row: the instruction, plus its input (context) if any."""
    if input_text:
        return f"{instruction}\n\n### Input:\n{input_text}"
    return instruction
