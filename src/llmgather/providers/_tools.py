"""Tools and JSON answers in each provider's wire form, and streamed tool calls put together.

A Request offers tools and asks for JSON answers in llmgather's one spelling (`tools`,
`tool_choice`, `json_schema`: see `llmgather._types.Request`); each adapter adds what its
function here returns to its body:

    llmgather          OpenAI                      Anthropic                 Gemini
    tools              tools[].function            tools[].input_schema      functionDeclarations
                                                                             [].parametersJsonSchema
    "auto"             "auto"                      {"type": "auto"}          mode AUTO
    "required"         "required"                  {"type": "any"}           mode ANY
    "none"             "none"                      {"type": "none"}          mode NONE
    {"name": n}        {"type": "function", …}     {"type": "tool", …}       ANY, allowedFunctionNames
    json_schema        response_format json_schema a forced tool (below)     responseMimeType JSON,
                                                                             responseJsonSchema

Anthropic's JSON-schema mode (`output_config.format`) is for its newest models only, so a
`json_schema` goes as the documented way that works on every model with tools: one tool named
JSON_ANSWER_TOOL whose input schema is the schema, and `tool_choice` forcing it; the adapter
reads that call's input back as the answer's text. (For a newer model, `extra={"output_config":
{"format": {"type": "json_schema", "schema": ...}}}` without `json_schema` asks natively.) Gemini
takes the schemas as JSON Schema (`parametersJsonSchema`, `responseJsonSchema`), not its OpenAPI
subset, so a user's schema goes as written.
"""

from __future__ import annotations

from typing import Any

import orjson

from llmgather._errors import InvalidInputError
from llmgather._types import JSON_ANSWER_TOOL, Request, ToolCall

__all__ = [
    "JSON_ANSWER_TOOL",
    "CallAssembler",
    "anthropic_fields",
    "anthropic_messages",
    "gemini_fields",
    "gemini_parts",
    "has_tool_turns",
    "openai_fields",
    "openai_messages",
]

_ANTHROPIC_CHOICES = {"auto": "auto", "required": "any", "none": "none"}
_GEMINI_MODES = {"auto": "AUTO", "required": "ANY", "none": "NONE"}


def openai_fields(request: Request) -> dict[str, Any]:
    """`tools`, `tool_choice` and `response_format` of a chat-completions body."""
    body: dict[str, Any] = {}
    if request.tools:
        body["tools"] = [{"type": "function", "function": dict(t)} for t in request.tools]
    choice = request.tool_choice
    if isinstance(choice, dict):
        body["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    elif choice is not None:
        body["tool_choice"] = choice
    if request.json_schema:
        body["response_format"] = {"type": "json_schema", "json_schema": dict(request.json_schema)}
    return body


def anthropic_fields(request: Request) -> dict[str, Any]:
    """`tools` and `tool_choice` of a Messages body; a json_schema as the forced answer tool."""
    body: dict[str, Any] = {}
    if request.tools:
        body["tools"] = [_anthropic_tool(t) for t in request.tools]
    choice = request.tool_choice
    if isinstance(choice, dict):
        body["tool_choice"] = {"type": "tool", "name": choice["name"]}
    elif choice is not None:
        body["tool_choice"] = {"type": _ANTHROPIC_CHOICES[choice]}
    schema = request.json_schema
    if schema:
        description = schema.get("description") or (
            f"Give the answer ({schema['name']}) as this tool's input."
        )
        answer_tool = {
            "name": JSON_ANSWER_TOOL,
            "description": description,
            "input_schema": schema["schema"],
        }
        body["tools"] = [answer_tool]
        body["tool_choice"] = {"type": "tool", "name": JSON_ANSWER_TOOL}
    return body


def _anthropic_tool(tool: dict[str, Any]) -> dict[str, Any]:
    converted = {"name": tool["name"], "input_schema": tool["parameters"]}
    if "description" in tool:
        converted["description"] = tool["description"]
    return converted


def gemini_fields(request: Request) -> tuple[dict[str, Any], dict[str, Any]]:
    """(top-level fields, generationConfig fields) of a generateContent body."""
    body: dict[str, Any] = {}
    config: dict[str, Any] = {}
    if request.tools:
        declarations = [_gemini_declaration(t) for t in request.tools]
        body["tools"] = [{"functionDeclarations": declarations}]
    choice = request.tool_choice
    if isinstance(choice, dict):
        calling = {"mode": "ANY", "allowedFunctionNames": [choice["name"]]}
        body["toolConfig"] = {"functionCallingConfig": calling}
    elif choice is not None:
        body["toolConfig"] = {"functionCallingConfig": {"mode": _GEMINI_MODES[choice]}}
    if request.json_schema:
        config["responseMimeType"] = "application/json"
        config["responseJsonSchema"] = request.json_schema["schema"]
    return body, config


def _gemini_declaration(tool: dict[str, Any]) -> dict[str, Any]:
    declaration = {"name": tool["name"], "parametersJsonSchema": tool["parameters"]}
    if "description" in tool:
        declaration["description"] = tool["description"]
    return declaration


class CallAssembler:
    """Tool calls that arrive in pieces (OpenAI's `tool_calls` deltas, Anthropic's
    `input_json_delta` events), put together by their index in the stream."""

    def __init__(self) -> None:
        self._calls: dict[int, tuple[str, str, list[str]]] = {}

    def start(self, index: int, id: str | None, name: str | None) -> None:
        """A call begins (or, for OpenAI, a delta repeats what is known of it)."""
        known_id, known_name, fragments = self._calls.get(index, ("", "", []))
        self._calls[index] = (id or known_id, name or known_name, fragments)

    def add(self, index: int, fragment: str) -> None:
        """A piece of the call's arguments as JSON text."""
        if index not in self._calls:
            self.start(index, None, None)
        self._calls[index][2].append(fragment)

    def __contains__(self, index: int) -> bool:
        return index in self._calls

    def name(self, index: int) -> str:
        return self._calls[index][1]

    def calls(self) -> tuple[ToolCall, ...]:
        """Every call, its arguments parsed (or kept raw if they are not a JSON object)."""
        return tuple(
            ToolCall.from_json(id, name, "".join(fragments))
            for _, (id, name, fragments) in sorted(self._calls.items())
        )


# -- tool calls and tool results inside a conversation ----------------------------------------
#
# A conversation that goes on after tool calls carries them in llmgather's message form:
#     {"role": "assistant", "content": text, "tool_calls": [{"id", "name", "arguments": {...}}]}
#     {"role": "tool", "tool_call_id", "name", "content": text, "is_error"?: bool}
# Each adapter passes its messages through the function below for its provider's form.


def has_tool_turns(messages: tuple[dict[str, Any], ...]) -> bool:
    """Whether any message is a tool call or a tool result (most requests: no, nothing to do)."""
    return any(m.get("role") == "tool" or m.get("tool_calls") for m in messages)


def openai_messages(messages: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """Chat-completions messages: calls under `tool_calls[].function`, arguments as JSON text."""
    if not has_tool_turns(messages):
        return list(messages)
    converted: list[dict[str, Any]] = []
    for message in messages:
        if message.get("role") == "tool":
            converted.append(
                {
                    "role": "tool",
                    "tool_call_id": message.get("tool_call_id", ""),
                    "content": message.get("content", ""),
                }
            )
        elif message.get("tool_calls"):
            calls = [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": _json(call["arguments"])},
                }
                for call in message["tool_calls"]
            ]
            text = message.get("content") or None
            converted.append({"role": "assistant", "content": text, "tool_calls": calls})
        else:
            converted.append(message)
    return converted


def anthropic_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages API turns: calls as `tool_use` blocks of the assistant, results as
    `tool_result` blocks of one user turn (the results of one turn's calls go together)."""
    converted: list[dict[str, Any]] = []
    for message in messages:
        role, content = message.get("role"), message.get("content", "")
        if role == "tool":
            result = {
                "type": "tool_result",
                "tool_use_id": message.get("tool_call_id", ""),
                "content": content,
            }
            if message.get("is_error"):
                result["is_error"] = True
            last = converted[-1] if converted else None
            if last and last["role"] == "user" and isinstance(last["content"], list):
                last["content"].append(result)
            else:
                converted.append({"role": "user", "content": [result]})
        elif message.get("tool_calls"):
            blocks: list[dict[str, Any]] = [{"type": "text", "text": content}] if content else []
            blocks += [
                {
                    "type": "tool_use",
                    "id": c["id"],
                    "name": c["name"],
                    "input": c["arguments"] or {},
                }
                for c in message["tool_calls"]
            ]
            converted.append({"role": "assistant", "content": blocks})
        else:
            converted.append({"role": role, "content": content})
    return converted


def gemini_parts(message: dict[str, Any]) -> tuple[str, list[dict[str, Any]]] | None:
    """(role, parts) of a tool call or tool result as Gemini takes them (`functionCall` parts
    of the model's turn, `functionResponse` parts of the user's); None for any other message."""
    if message.get("role") == "tool":
        name = message.get("name")
        if not isinstance(name, str) or not name:
            # Gemini matches a result to its call by the function's name, not by an id.
            raise InvalidInputError(
                'a tool result sent to Gemini must name its tool: give the message a "name"'
            )
        response = {
            "name": name,
            "response": {"error" if message.get("is_error") else "result": message.get("content")},
        }
        return "user", [{"functionResponse": response}]
    if message.get("tool_calls"):
        parts: list[dict[str, Any]] = []
        if message.get("content"):
            parts.append({"text": message["content"]})
        parts += [
            {"functionCall": {"name": c["name"], "args": c["arguments"] or {}}}
            for c in message["tool_calls"]
        ]
        return "model", parts
    return None


def _json(arguments: Any) -> str:
    return orjson.dumps(arguments if arguments is not None else {}).decode()
