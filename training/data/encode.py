"""Examples -> token ids and labels, exactly as the server will tokenize the prompt.

The prompt is tokenized alone (with the tokenizer's bos, as vLLM's /v1/completions does; chat
prompts are rendered by the chat template, which writes its own bos) and the response after
it (+ eos), so the model is trained on the very token boundary it sees when served. Labels are
-100 on the prompt when the loss is on the response only.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from training.data.records import BadRow, Example
from training.templates import PromptTemplate

IGNORE = -100


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]
    truncated: bool


def prompt_ids(tokenizer: PreTrainedTokenizerBase, template: PromptTemplate, example: Example) -> list[int]:
    """Token ids the served model would see for this example's prompt (generation starts after)."""
    if template.uses_chat_template:
        messages = list(example.messages or ({"role": "user", "content": example.prompt},))
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return tokenizer(text, add_special_tokens=False).input_ids
    return tokenizer(template.render(example.prompt or "")).input_ids


def encode(tokenizer: PreTrainedTokenizerBase, template: PromptTemplate, example: Example, max_length: int,
           too_long: str = "truncate", loss_on: str = "response") -> Encoded | None:
    """Ids and labels for one example; None if it is skipped (too long with too_long=skip)."""
    eos = [tokenizer.eos_token_id]
    if example.text is not None:  # raw text: every token is a target
        prompt: list[int] = []
        response = tokenizer(example.text).input_ids + eos
    else:
        prompt = prompt_ids(tokenizer, template, example)
        response = tokenizer(example.response, add_special_tokens=False).input_ids + eos
    ids = prompt + response
    truncated = len(ids) > max_length
    if truncated:
        if too_long == "error":
            raise BadRow(example.where, f"{len(ids)} tokens, above data.max_length={max_length}")
        # A prompt that fills max_length leaves nothing to learn from: skip it even in truncate mode.
        if too_long == "skip" or len(prompt) >= max_length:
            return None
        ids = ids[:max_length]
    labels = list(ids) if loss_on == "all" else [IGNORE] * len(prompt) + ids[len(prompt):]
    return Encoded(ids, labels, truncated)
