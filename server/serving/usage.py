"""A request's token counts, as its response's `usage` and the metrics report them."""

from __future__ import annotations

from vllm.outputs import RequestOutput

from server.protocol.common import PromptTokensDetails, Usage


class UsageCounter:
    """A request's token counts, kept by `generate` as outputs arrive: the response's `usage`
    and the metrics read the same figures."""

    def __init__(self, prompt_tokens: int) -> None:
        self.prompt_tokens = prompt_tokens  # virtual tokens included
        self.completion_tokens = 0
        self._cached: dict[int, int] = {}  # prompt index -> its cached prompt tokens

    def add(self, prompt_index: int, output: RequestOutput) -> int:
        """Count one engine output; returns the tokens it brought."""
        new_tokens = sum(len(o.token_ids) for o in output.outputs)
        self.completion_tokens += new_tokens
        self._cached[prompt_index] = output.num_cached_tokens or 0
        return new_tokens

    @property
    def cached_tokens(self) -> int:
        return sum(self._cached.values())

    def usage(self) -> Usage:
        return Usage(prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens,
                     total_tokens=self.prompt_tokens + self.completion_tokens,
                     prompt_tokens_details=PromptTokensDetails(cached_tokens=self.cached_tokens))
