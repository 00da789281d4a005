"""Prompts -> token ids, with the chat template and the context-window check.

Tokenising here (not in the engine) lets the server count tokens, refuse over-long prompts with
the limit in the message, and put soft-prompt embeddings in front of the ids.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from server.errors import bad_request
from server.protocol.chat import ChatMessage

# Past this many characters tokenising may take milliseconds: do it off the event loop.
_OFFLOAD_CHARS = 20_000


@dataclass
class Prompt:
    token_ids: list[int]
    text: str | None = None  # for `echo`


class PromptRenderer:
    def __init__(self, tokenizer: PreTrainedTokenizerBase, vocab_size: int, max_model_len: int):
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.max_model_len = max_model_len

    async def _encode(self, text: str, add_special_tokens: bool) -> list[int]:
        if len(text) > _OFFLOAD_CHARS:
            return await asyncio.to_thread(self.tokenizer.encode, text,
                                           add_special_tokens=add_special_tokens)
        return self.tokenizer.encode(text, add_special_tokens=add_special_tokens)

    async def completion_prompts(self, prompt: str | list, template=None,
                                 param: str = "prompt") -> list[Prompt]:
        """The four forms of `prompt`: text, list of texts, token ids, list of token-id lists.

        `template`, if given, wraps each text prompt (token-id prompts cannot be wrapped);
        `param`: the request field they came from (`input` on the pooling endpoints)."""
        if isinstance(prompt, str):
            items: list = [prompt]
        elif prompt and all(isinstance(p, int) for p in prompt):
            items = [prompt]
        else:
            items = list(prompt)
        if not items:
            raise bad_request(f"{param} must not be empty", param=param)
        prompts = []
        for item in items:
            if isinstance(item, str):
                if template is not None:
                    item = template(item)
                # As vLLM does: the tokenizer's own special tokens (BOS) are added.
                prompts.append(Prompt(await self._encode(item, True), item))
            elif template is not None:
                raise bad_request("use_adapter_template needs text prompts, not token ids",
                                  param="use_adapter_template")
            else:
                prompts.append(Prompt(self.check_ids(item, param)))
        return prompts

    def check_ids(self, ids: list[int], param: str = "prompt") -> list[int]:
        if not ids:
            raise bad_request(f"a token-id {param} must not be empty", param=param)
        bad = next((t for t in ids if not 0 <= t < self.vocab_size), None)
        if bad is not None:
            raise bad_request(f"token id {bad} is outside the vocabulary [0, {self.vocab_size})",
                              param=param)
        return list(ids)

    async def chat_prompt(self, messages: list[ChatMessage], add_generation_prompt: bool,
                          template=None, tools: list[dict] | None = None) -> Prompt:
        """`template`, if given, wraps the last user message; `tools` go to the chat template
        (as transformers passes them)."""
        if self.tokenizer.chat_template is None:
            raise bad_request("this model has no chat template; use /v1/completions")
        conversation = [_turn(i, m) for i, m in enumerate(messages)]
        if template is not None:
            last_user = next((c for c in reversed(conversation) if c["role"] == "user"), None)
            if last_user is None:
                raise bad_request("use_adapter_template needs a user message", param="messages")
            last_user["content"] = template(last_user["content"])
        try:
            text = self.tokenizer.apply_chat_template(
                conversation, tools=tools, tokenize=False,
                add_generation_prompt=add_generation_prompt)
        except Exception as exc:  # jinja raises for conversations the template refuses
            raise bad_request(f"the chat template refused these messages: {exc}",
                              param="messages") from exc
        # The template writes its own special tokens (BOS); adding them again would double them.
        return Prompt(await self._encode(text, False), text)

    def check_fits(self, prompt_len: int, what: str, param: str) -> None:
        """An input that is only read (pooling: nothing generated) may fill the whole window."""
        if prompt_len > self.max_model_len:
            raise bad_request(
                f"This model's maximum context length is {self.max_model_len} tokens. However, "
                f"{what} has {prompt_len} tokens. Please shorten it.", param=param)

    def max_tokens(self, prompt_len: int, requested: int | None, param: str = "max_tokens") -> int:
        """New-token budget, refusing a prompt (+ budget) that does not fit the context window."""
        limit = self.max_model_len
        if prompt_len >= limit:
            raise bad_request(
                f"This model's maximum context length is {limit} tokens. However, your prompt "
                f"has {prompt_len} tokens, leaving no room for a completion. Please shorten it.",
                param="messages" if param == "max_completion_tokens" else "prompt")
        if requested is None:
            return limit - prompt_len
        if prompt_len + requested > limit:
            raise bad_request(
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{prompt_len + requested} tokens ({prompt_len} in the prompt, {requested} in the "
                f"completion). Please reduce the prompt or {param}.", param=param)
        return requested


def _turn(index: int, message: ChatMessage) -> dict:
    """One message as chat templates read it; a replayed call's arguments as an object."""
    turn: dict = {"role": message.role, "content": message.text()}
    if message.name:
        turn["name"] = message.name
    if message.tool_calls:
        if message.role != "assistant":
            raise bad_request("only assistant messages carry tool_calls",
                              param=f"messages.{index}.tool_calls")
        turn["tool_calls"] = [
            {"id": call.id, "type": "function", "function": {
                "name": call.function.name,
                "arguments": arguments_object(
                    call.function.arguments,
                    f"messages.{index}.tool_calls.{j}.function.arguments")}}
            for j, call in enumerate(message.tool_calls)]
    if message.role == "tool":
        if not message.tool_call_id:
            raise bad_request("a tool message needs the tool_call_id of the call it answers",
                              param=f"messages.{index}.tool_call_id")
        turn["tool_call_id"] = message.tool_call_id
    return turn


def arguments_object(arguments: str, param: str) -> dict:
    """A replayed call's arguments as the object chat templates render."""
    try:
        value = json.loads(arguments)
    except json.JSONDecodeError as exc:
        raise bad_request(f"{param} is not valid JSON: {exc}", param=param) from exc
    if not isinstance(value, dict):
        raise bad_request(f"{param} must be a JSON object", param=param)
    return value
