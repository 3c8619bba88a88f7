"""LangChain messages as llmgather messages, and llmgather answers as LangChain messages.

    SystemMessage               {"role": "system", "content": text}
    HumanMessage                {"role": "user", "content": text}
    AIMessage (+ tool_calls)    {"role": "assistant", "content": text, "tool_calls": [
                                    {"id", "name", "arguments": {...}}]}
    ToolMessage                 {"role": "tool", "tool_call_id", "name", "content": text,
                                 "is_error": status == "error"}

Only text travels (every provider takes it): an image, audio or file block is refused with an
InvalidInputError that says so. A tool call's own blocks in an AIMessage's content (Anthropic's
`tool_use`) are left to `tool_calls`, which says the same. The adapters put tool calls and
results into each provider's form (`providers/_tools.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.ai import InputTokenDetails, UsageMetadata
from langchain_core.messages.tool import invalid_tool_call, tool_call, tool_call_chunk

from llmgather._errors import InvalidInputError
from llmgather._types import Message, ToolCall, Usage

# Content blocks that carry no text but need not stop a conversation: the model's own
# tool-call blocks (also in `tool_calls`) and its reasoning.
_SKIPPED_BLOCKS = frozenset({"tool_use", "tool_call", "function_call", "thinking", "reasoning"})
_CHAT_ROLES = {"system": "system", "developer": "system", "user": "user", "human": "user",
               "assistant": "assistant", "ai": "assistant"}  # fmt: skip


def to_llmgather(messages: Sequence[BaseMessage]) -> list[Message]:
    """The conversation in llmgather's message form (see the module docstring)."""
    # tool_call_id → tool name, for a ToolMessage that names no tool (Gemini needs the name)
    names: dict[str, str] = {}
    converted: list[Message] = []
    for i, message in enumerate(messages):
        at = f"messages[{i}]"
        if isinstance(message, SystemMessage):
            converted.append({"role": "system", "content": text_of(message.content, at)})
        elif isinstance(message, HumanMessage):
            converted.append({"role": "user", "content": text_of(message.content, at)})
        elif isinstance(message, AIMessage):
            entry: Message = {"role": "assistant", "content": text_of(message.content, at)}
            if message.tool_calls:
                entry["tool_calls"] = [
                    {
                        "id": call.get("id") or f"call_{n}",
                        "name": call["name"],
                        "arguments": call["args"],
                    }
                    for n, call in enumerate(message.tool_calls)
                ]
                names |= {call["id"]: call["name"] for call in entry["tool_calls"]}
            converted.append(entry)
        elif isinstance(message, ToolMessage):
            converted.append(
                {
                    "role": "tool",
                    "tool_call_id": message.tool_call_id,
                    # No invented name: Gemini matches a result to its call by name, and
                    # its adapter says so when there is none.
                    "name": message.name or names.get(message.tool_call_id, ""),
                    "content": text_of(message.content, at),
                    "is_error": message.status == "error",
                }
            )
        elif isinstance(message, ChatMessage) and message.role in _CHAT_ROLES:
            role = _CHAT_ROLES[message.role]
            converted.append({"role": role, "content": text_of(message.content, at)})
        else:
            raise InvalidInputError(
                f"{at}: ChatLLMGather takes system, human, AI and tool messages, not "
                f"{type(message).__name__}"
            )
    return converted


def text_of(content: str | list[Any], at: str) -> str:
    """A message's text: a string, or its text blocks joined (tool-call blocks skipped)."""
    if isinstance(content, str):
        return content
    texts: list[str] = []
    for block in content:
        if isinstance(block, str):
            texts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            texts.append(str(block.get("text", "")))
        elif not (isinstance(block, dict) and block.get("type") in _SKIPPED_BLOCKS):
            kind = block.get("type") if isinstance(block, dict) else type(block).__name__
            raise InvalidInputError(
                f"{at}: ChatLLMGather sends text only; a {kind!r} content block cannot go to "
                "every provider. Describe it in text, or call the provider's own LangChain model"
            )
    return "".join(texts)


@dataclass(frozen=True, slots=True)
class Answer:
    """What one model call gave, whichever road it took (a Result or a Completion)."""

    text: str
    usage: Usage | None
    finish_reason: str | None
    tool_calls: tuple[ToolCall, ...]
    model: str


def usage_metadata(usage: Usage | None) -> UsageMetadata | None:
    if usage is None:
        return None
    metadata = UsageMetadata(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        total_tokens=usage.total_tokens,
    )
    # LangChain's input counts the cached tokens too, and names the cache's share apart.
    if usage.cache_read_tokens or usage.cache_write_tokens:
        metadata["input_token_details"] = InputTokenDetails(
            cache_read=usage.cache_read_tokens, cache_creation=usage.cache_write_tokens
        )
    return metadata


def response_metadata(answer: Answer, provider: str) -> dict[str, Any]:
    return {
        "model_name": answer.model,
        "finish_reason": answer.finish_reason,
        "model_provider": provider,
    }


def ai_message(answer: Answer, provider: str) -> AIMessage:
    """The whole answer as an AIMessage; arguments that are not a JSON object become an
    invalid tool call, with the text the model sent."""
    calls, invalid = [], []
    for call in answer.tool_calls:
        if call.arguments is None:
            invalid.append(invalid_tool_call(name=call.name, args=call.raw_arguments, id=call.id))
        else:
            calls.append(tool_call(name=call.name, args=call.arguments, id=call.id))
    return AIMessage(
        content=answer.text,
        tool_calls=calls,
        invalid_tool_calls=invalid,
        usage_metadata=usage_metadata(answer.usage),
        response_metadata=response_metadata(answer, provider),
    )


def piece_chunk(text: str) -> AIMessageChunk:
    return AIMessageChunk(content=text)


def last_chunk(answer: Answer, provider: str) -> AIMessageChunk:
    """The stream's closing chunk: the tool calls whole (each arrives complete here), the usage
    and the finish reason; its text is empty, the text went in the pieces before it."""
    chunks = [
        tool_call_chunk(
            name=call.name,
            args=call.raw_arguments
            if call.arguments is None
            else orjson.dumps(call.arguments).decode(),
            id=call.id,
            index=index,
        )
        for index, call in enumerate(answer.tool_calls)
    ]
    return AIMessageChunk(
        content="",
        tool_call_chunks=chunks,
        usage_metadata=usage_metadata(answer.usage),
        response_metadata=response_metadata(answer, provider),
        chunk_position="last",
    )
