"""A prompt dict as a Request: the one parser, for the library's dict prompts and JSONL lines.

    {"prompt": "..."} or {"messages": [{"role": "user", "content": "..."}, ...]}
    optional: id, system, model, max_tokens, temperature, metadata, extra,
              tools, tool_choice, json_schema (or response_format)

    "tools": [{"name": "get_weather", "description": "...", "parameters": {JSON schema}}]
    "tool_choice": "auto" | "required" | "none" | {"name": "get_weather"}
    "json_schema": {"name": "person", "schema": {JSON schema}, "description": ..., "strict": ...}

OpenAI's own spelling of the same is read too, and kept in the one above (`tool_options`, the
only reader of these fields, for prompt dicts, input lines and the Client's keywords alike):

    "tools": [{"type": "function", "function": {"name": ..., "parameters": ...}}]
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}}
    "response_format": {"type": "json_schema", "json_schema": {"name": ..., "schema": ...}}

Every field is checked; a bad one raises InvalidInputError whose message names the field, what
was found and what it must be, and no place: a reader of a file puts `file:line: ` before it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from llmgather._errors import InvalidInputError
from llmgather._types import JSON_ANSWER_TOOL, Message, Request

__all__ = [
    "PROMPT_FIELDS",
    "PROMPT_SHAPES",
    "TOOL_FIELDS",
    "TOOL_INPUT_FIELDS",
    "content_value",
    "json_type",
    "messages_value",
    "positive_int",
    "request_from_dict",
    "show_value",
    "temperature_value",
    "tool_options",
]

TOOL_FIELDS = ("tools", "tool_choice", "json_schema")  # as a Request keeps them
# What `tool_options` reads: OpenAI's `response_format` is another spelling of `json_schema`.
TOOL_INPUT_FIELDS = (*TOOL_FIELDS, "response_format")
PROMPT_FIELDS = frozenset(
    "id prompt messages system model max_tokens temperature metadata extra".split()
) | frozenset(TOOL_INPUT_FIELDS)
PROMPT_SHAPES = '{"prompt": "..."} or {"messages": [{"role": "user", "content": "..."}]}'
_ROLES = ("system", "user", "assistant")


def request_from_dict(data: Mapping[str, Any], *, system: str | None = None) -> Request:
    """The Request a prompt dict asks for; `system` is the default system prompt.

    `prompt` (a non-empty string) or `messages` (role and content; "developer" reads as
    "system", a list of text parts as their text joined by newlines), not both. `id` is a
    non-empty string or an integer, kept as its string ("" when absent). The dict's own
    `system` replaces the default; the system prompt goes first unless the messages hold one
    already. `metadata` is passed through; `extra` holds provider-native body fields.
    """
    id = _id_value(data.get("id"))
    line_system = _optional(data, "system", str, "a string")
    if line_system is not None:
        system = line_system
    messages = _messages_of(data, own_system=line_system is not None)
    if system and not any(m["role"] == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": system})
    return Request(
        messages=tuple(messages),
        id=id,
        model=_optional(data, "model", str, "a non-empty string", nonempty=True),
        max_tokens=positive_int(data, "max_tokens"),
        temperature=temperature_value(data, "temperature"),
        metadata=data.get("metadata"),
        extra=_optional(data, "extra", dict, "an object of provider-native body fields"),
        **tool_options(data),
    )


def tool_options(data: Mapping[str, Any]) -> dict[str, Any]:
    """The `tools`, `tool_choice` and `json_schema` of a prompt dict, checked and in the form a
    Request keeps them (absent ones as None), whether written in llmgather's spelling or in
    OpenAI's (`{"type": "function", "function": {...}}`, `response_format`). A request asks
    for tool calls or for a JSON answer, not both: not every provider can do the two at once."""
    tools = _tools_value(data.get("tools"))
    choice = _tool_choice_value(data.get("tool_choice"), tools)
    schema = _schema_of(data)
    if tools is not None and schema is not None:
        raise InvalidInputError(
            'fields "tools" and "json_schema" cannot go together; give one: tools for '
            "tool calls, json_schema for a JSON answer"
        )
    return {"tools": tools, "tool_choice": choice, "json_schema": schema}


# `strict` (OpenAI's strict schema adherence) goes to OpenAI; the other providers have no such switch.
_TOOL_KEYS = frozenset({"name", "description", "parameters", "strict"})
_OPENAI_TOOL_KEYS = frozenset({"type", "function"})
_SCHEMA_KEYS = frozenset({"name", "schema", "description", "strict"})
_CHOICES = ("auto", "required", "none")
# What every provider accepts as a function name: OpenAI's and Anthropic's rule, and Gemini's
# first character (a letter or an underscore).
_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_-]{0,63}")
_NO_ARGUMENTS = {"type": "object", "properties": {}}
_TOOL_SHAPE = '{"name": ..., "description": ..., "parameters": {JSON schema}}'


def _tools_value(value: Any) -> tuple[dict[str, Any], ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        got = "an empty list" if value == [] else show_value(value)
        raise InvalidInputError(
            f'field "tools" must be a non-empty list of {_TOOL_SHAPE} objects, got {got}'
        )
    tools: list[dict[str, Any]] = []
    for i, tool in enumerate(value):
        at = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise InvalidInputError(
                f'field "{at}" must be an object {_TOOL_SHAPE}, got {json_type(tool)}'
            )
        if "function" in tool and "name" not in tool:
            tool, at = _openai_function(tool, at), f"{at}.function"
        _no_unknown_keys(tool, _TOOL_KEYS, at)
        name = _name_value(tool.get("name"), f"{at}.name")
        if name == JSON_ANSWER_TOOL:
            raise InvalidInputError(
                f'field "{at}.name": the name "{name}" is reserved for json_schema answers; '
                "rename the tool"
            )
        if any(t["name"] == name for t in tools):
            raise InvalidInputError(f'field "{at}.name": two tools are named "{name}"')
        parsed: dict[str, Any] = {"name": name}
        _copy_optional(tool, parsed, at)
        parsed["parameters"] = _object_schema(tool.get("parameters"), f"{at}.parameters")
        tools.append(parsed)
    return tuple(tools)


def _openai_function(tool: dict[str, Any], at: str) -> Any:
    """The function object of a tool in OpenAI's spelling, `{"type": "function", "function":
    {...}}` (what LangChain's `convert_to_openai_tool` returns)."""
    _no_unknown_keys(tool, _OPENAI_TOOL_KEYS, at)
    if tool.get("type", "function") != "function":
        raise InvalidInputError(
            f'field "{at}.type" must be "function" (the only kind of tool every provider '
            f"takes), got {show_value(tool.get('type'))}"
        )
    function = tool["function"]
    if not isinstance(function, dict):
        raise InvalidInputError(
            f'field "{at}.function" must be an object {_TOOL_SHAPE}, got {json_type(function)}'
        )
    return function


def _copy_optional(given: dict[str, Any], parsed: dict[str, Any], at: str) -> None:
    """A tool's or a schema's optional `description` (a string) and `strict` (true or false)."""
    for field, kind, what in (("description", str, "a string"), ("strict", bool, "true or false")):
        value = given.get(field)
        if value is None:
            continue
        if not isinstance(value, kind):
            raise InvalidInputError(f'field "{at}.{field}" must be {what}, got {show_value(value)}')
        parsed[field] = value


def _object_schema(value: Any, at: str) -> dict[str, Any]:
    """A tool's arguments schema: a JSON schema of an object (absent: no arguments)."""
    if value is None:
        return dict(_NO_ARGUMENTS)
    if not isinstance(value, dict) or value.get("type") != "object":
        raise InvalidInputError(
            f'field "{at}" must be a JSON schema of an object ({{"type": "object", '
            f'"properties": {{...}}}}), got {show_value(value)}'
        )
    return value


def _tool_choice_value(
    value: Any, tools: tuple[dict[str, Any], ...] | None
) -> str | dict[str, str] | None:
    if value is None:
        return None
    if tools is None:
        raise InvalidInputError('field "tool_choice" needs "tools" to choose from; add them')
    if value in _CHOICES:
        return str(value)
    names = [t["name"] for t in tools]
    if isinstance(value, dict) and value.get("type") == "function" and "function" in value:
        value = value["function"]  # OpenAI's spelling: {"type": "function", "function": {...}}
    if isinstance(value, dict) and set(value) == {"name"} and value["name"] in names:
        return {"name": value["name"]}
    raise InvalidInputError(
        f'field "tool_choice" must be "auto", "required", "none" or {{"name": ...}} naming '
        f"one of the tools ({', '.join(names)}), got {show_value(value)}"
    )


_SCHEMA_SHAPE = '{"name": ..., "schema": {JSON schema of an object}}'
_RESPONSE_FORMAT_SHAPE = f'{{"type": "json_schema", "json_schema": {_SCHEMA_SHAPE}}}'


def _schema_of(data: Mapping[str, Any]) -> dict[str, Any] | None:
    """The JSON schema the answer must fit: `json_schema`, or OpenAI's `response_format`."""
    given, response_format = data.get("json_schema"), data.get("response_format")
    if response_format is None:
        return _json_schema_value(given, "json_schema")
    if given is not None:
        raise InvalidInputError(
            'fields "json_schema" and "response_format" both ask for the answer\'s form; give one'
        )
    if not isinstance(response_format, dict):
        raise InvalidInputError(
            f'field "response_format" must be an object {_RESPONSE_FORMAT_SHAPE}, '
            f"got {show_value(response_format)}"
        )
    kind = response_format.get("type")
    if kind == "text" and set(response_format) == {"type"}:
        return None  # OpenAI's default: a plain text answer
    if kind == "json_object":
        raise InvalidInputError(
            'field "response_format": {"type": "json_object"} (any JSON object) is not an '
            f"answer every provider can be held to; give its schema: {_RESPONSE_FORMAT_SHAPE}"
        )
    if kind != "json_schema":
        raise InvalidInputError(
            f'field "response_format.type" must be "json_schema" (or "text"), got {show_value(kind)}'
        )
    _no_unknown_keys(response_format, frozenset({"type", "json_schema"}), "response_format")
    schema = response_format.get("json_schema")
    if schema is None:
        raise InvalidInputError(
            f'field "response_format.json_schema" is missing; expected {_SCHEMA_SHAPE}'
        )
    return _json_schema_value(schema, "response_format.json_schema")


def _json_schema_value(value: Any, at: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidInputError(
            f'field "{at}" must be an object {_SCHEMA_SHAPE}, got {show_value(value)}'
        )
    _no_unknown_keys(value, _SCHEMA_KEYS, at)
    parsed: dict[str, Any] = {
        "name": _name_value(value.get("name", "response"), f"{at}.name"),
        "schema": _object_schema(value.get("schema") or {}, f"{at}.schema"),
    }
    _copy_optional(value, parsed, at)
    return parsed


def _name_value(value: Any, at: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise InvalidInputError(
            f'field "{at}" must be 1 to 64 letters, digits, "_" or "-", got {show_value(value)}'
        )
    return value


def _no_unknown_keys(value: dict[str, Any], known: frozenset[str], at: str) -> None:
    unknown = sorted(set(value) - known)
    if unknown:
        raise InvalidInputError(
            f'field "{at}" has unknown key {show_value(unknown[0])}; '
            f"it may have {', '.join(sorted(known))}"
        )


def _messages_of(data: Mapping[str, Any], *, own_system: bool) -> list[Message]:
    has_prompt, has_messages = "prompt" in data, "messages" in data
    if has_prompt and has_messages:
        raise InvalidInputError(f'has both "prompt" and "messages"; give one: {PROMPT_SHAPES}')
    if has_prompt:
        prompt = data["prompt"]
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidInputError(
                f'field "prompt" must be a non-empty string, got {show_value(prompt)}'
            )
        return [{"role": "user", "content": prompt}]
    if not has_messages:
        raise InvalidInputError(f'no "prompt" or "messages" field; expected {PROMPT_SHAPES}')
    messages = messages_value(data["messages"], "messages")
    if own_system and any(m["role"] == "system" for m in messages):
        raise InvalidInputError(
            'field "system" conflicts with the system message in "messages"; give one'
        )
    return messages


def messages_value(value: Any, name: str) -> list[Message]:
    """A non-empty list of {"role", "content"} messages; "developer" is read as "system"."""
    if not isinstance(value, list) or not value:
        got = "an empty list" if value == [] else show_value(value)
        raise InvalidInputError(
            f'field "{name}" must be a non-empty list of {{"role": ..., "content": ...}} objects, got {got}'
        )
    messages: list[Message] = []
    for i, m in enumerate(value):
        at = f"{name}[{i}]"
        if not isinstance(m, dict):
            raise InvalidInputError(
                f'field "{at}" must be an object with "role" and "content", got {json_type(m)}'
            )
        role = "system" if m.get("role") == "developer" else m.get("role")
        if role not in _ROLES:
            raise InvalidInputError(
                f'field "{at}.role" must be one of {", ".join(_ROLES)}, got {show_value(m.get("role"))}'
            )
        messages.append({"role": role, "content": content_value(m.get("content"), f"{at}.content")})
    return messages


def content_value(value: Any, name: str) -> str:
    """A message's content: a string, or OpenAI's list of text parts joined by newlines."""
    if isinstance(value, str):
        return value
    # OpenAI's list-of-parts form; only text parts can be sent to every provider.
    if (
        isinstance(value, list)
        and value
        and all(
            isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
            for p in value
        )
    ):
        return "\n".join(p["text"] for p in value)
    raise InvalidInputError(
        f'field "{name}" must be a string or a list of {{"type": "text", "text": ...}} parts, got {show_value(value)}'
    )


# The widest range a provider llmgather speaks takes (OpenAI's and Gemini's; Anthropic's is
# 0 to 1, and says so in its own 400).
MAX_TEMPERATURE = 2.0
TEMPERATURE_RULE = f"a number from 0 to {MAX_TEMPERATURE:g}"


def positive_int(data: Mapping[str, Any], key: str, *, prefix: str = "") -> int | None:
    """A positive integer, or None if absent."""
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidInputError(
            f'field "{prefix}{key}" must be a positive integer, got {show_value(value)}'
        )
    return value


def temperature_value(data: Mapping[str, Any], key: str, *, prefix: str = "") -> float | None:
    """A temperature (`valid_temperature`), as a float, or None if absent."""
    value = data.get(key)
    if value is None:
        return None
    if not valid_temperature(value):
        raise InvalidInputError(
            f'field "{prefix}{key}" must be {TEMPERATURE_RULE}, got {show_value(value)}'
        )
    return float(value)


def valid_temperature(value: object) -> bool:
    """The one rule for a temperature, wherever it is given (an input line, `--temperature`,
    the service's fields and parameters): a number from 0 to MAX_TEMPERATURE."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and 0 <= value <= MAX_TEMPERATURE
    )


def _id_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InvalidInputError(
        f'field "id" must be a non-empty string or an integer, got {show_value(value)}'
    )


def _optional(
    data: Mapping[str, Any], key: str, kind: type, expected: str, *, nonempty: bool = False
) -> Any:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or (nonempty and not value):
        raise InvalidInputError(f'field "{key}" must be {expected}, got {show_value(value)}')
    return value


def show_value(value: Any) -> str:
    """A short JSON rendering of a bad value for an error message."""
    if value is None:
        return "null"
    try:
        text = orjson.dumps(value).decode() if json_type(value) != "?" else repr(value)
    except (TypeError, RecursionError):  # an object inside a list; nesting past orjson's limit
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


def json_type(value: Any) -> str:
    """What kind of JSON value `value` is, with its article ("a string", "an array")."""
    for kind, name in ((bool, "a boolean"), (int, "a number"), (float, "a number"), (str, "a string"),
                       (list, "an array"), (dict, "an object")):  # fmt: skip
        if isinstance(value, kind):
            return name
    return "null" if value is None else "?"
