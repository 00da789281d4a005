"""The server's tool-call parser: one of vLLM's, named by --tool-call-parser, chosen and checked
against the tokenizer once at start-up (`serving.tool_calls` uses it per request)."""

from __future__ import annotations

from vllm.parser import ParserManager
from vllm.parser.abstract_parser import DelegatingParser, Parser
from vllm.tool_parsers import ToolParser


class _ForcedCallsOnly(DelegatingParser):
    """Without `--tool-call-parser`: vLLM's JSON reading of `required` and named-function
    outputs (which its `DelegatingParser` does for any tool parser); the base `ToolParser` is
    never asked to parse, since `auto` is refused."""

    tool_parser_cls = ToolParser


class ToolCalling:
    """The server's tool-call parser, chosen once at start-up."""

    def __init__(self, parser_name: str | None, tokenizer, model_name: str,
                 strict_level: str = "parameter") -> None:
        self.parser_name = parser_name
        if parser_name is None:
            self.parser_cls: type[Parser] = _ForcedCallsOnly
        else:
            # Raises (start-up fails) for an unknown name or a tokenizer lacking its tokens.
            parser_cls = ParserManager.get_parser(tool_parser_name=parser_name,
                                                  enable_auto_tools=True, tokenizer=tokenizer,
                                                  model_name=model_name,
                                                  tool_strict_level=strict_level)
            assert parser_cls is not None
            self.parser_cls = parser_cls
        self.tokenizer = tokenizer
