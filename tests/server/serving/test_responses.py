"""A Responses request as the chat request it runs as, and its errors named by its own fields."""

from __future__ import annotations

import pytest

from server.errors import APIError, bad_request
from server.protocol.responses import ResponsesRequest
from server.serving.responses import _as_responses_error, chat_request


def convert(**fields):
    return chat_request(ResponsesRequest.model_validate({"model": "m", "input": "hi", **fields}))


def test_input_items_become_chat_messages():
    chat = convert(instructions="be brief", input=[
        {"role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
         "content": [{"type": "output_text", "text": "Let me see.", "annotations": []}]},
        {"type": "function_call", "call_id": "c1", "name": "get_weather",
         "arguments": '{"city": "Oslo"}', "id": "fc_1", "status": "completed"},
        {"type": "function_call", "call_id": "c2", "name": "get_weather",
         "arguments": '{"city": "Rome"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "snowy"},
        {"type": "function_call_output", "call_id": "c2", "output": "rainy"}])
    assert [m.role for m in chat.messages] == ["system", "user", "assistant", "tool", "tool"]
    assistant = chat.messages[2]
    assert assistant.text() == "Let me see."  # text and calls of one turn: one message
    assert [c.id for c in assistant.tool_calls] == ["c1", "c2"]
    assert chat.messages[3].tool_call_id == "c1" and chat.messages[3].text() == "snowy"


def test_fields_map_to_their_chat_counterparts():
    chat = convert(max_output_tokens=9, temperature=0.5, top_p=0.9, parallel_tool_calls=False,
                   tools=[{"type": "function", "name": "f", "parameters": {"type": "object"}}],
                   tool_choice={"type": "function", "name": "f"},
                   text={"format": {"type": "json_schema", "name": "v",
                                    "schema": {"type": "integer"}}},
                   soft_prompt="sp", top_k=5, seed=3)
    assert chat.max_completion_tokens == 9 and chat.temperature == 0.5 and chat.top_p == 0.9
    assert chat.tools[0].function.name == "f" and chat.tool_choice.function.name == "f"
    assert chat.parallel_tool_calls is False
    assert chat.response_format.json_schema.schema_ == {"type": "integer"}
    assert (chat.soft_prompt, chat.top_k, chat.seed) == ("sp", 5, 3)


def test_previous_response_id_is_refused():
    with pytest.raises(APIError) as e:
        convert(previous_response_id="resp_1")
    assert e.value.param == "previous_response_id"


@pytest.mark.parametrize("chat_param, param", [
    ("response_format.json_schema.schema", "text.format.schema"),
    ("tools.1.function.parameters", "tools.1.parameters"),
    ("max_completion_tokens", "max_output_tokens"),
    ("messages.3.tool_call_id", "input"),
    ("model", "model"),
])
def test_errors_name_the_responses_field(chat_param, param):
    error = _as_responses_error(bad_request(f"{chat_param} is wrong", param=chat_param))
    assert error.param == param and error.message == f"{param} is wrong"
