"""JSONL input: plain prompt/messages lines and OpenAI Batch API request lines, told apart per line."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

import orjson

from llmgather._types import Message, Request
from llmgather.jobs.inputs.fields import (
    json_type,
    max_tokens_field,
    messages_field,
    optional_field,
    optional_id_field,
    recover_id,
    show_value,
    temperature_field,
)
from llmgather.jobs.inputs.item import InputItem, LineError
from llmgather.jobs.inputs.lines import decode, raw_lines

__all__ = ["read_jsonl"]

_BATCH_URLS = ("/v1/chat/completions",)
_PROMPT_SHAPES = '{"prompt": "..."} or {"messages": [{"role": "user", "content": "..."}]}'

# Body fields a Batch API line sets that llmgather reads itself; every other field (response_format,
# seed, stop, max_completion_tokens...) goes to the provider as written. max_completion_tokens is
# also read, for the token estimate. `stream` is llmgather's choice (`--stream`), and `metadata` is
# passed through to the output line.
_BATCH_BODY_READ = frozenset(
    {"messages", "model", "max_tokens", "temperature", "metadata", "stream", "stream_options"}
)


def read_jsonl(
    stream: IO[bytes], source: str, system: str | None, max_line_bytes: int
) -> Iterator[InputItem]:
    """One InputItem per line; `system` is the default system prompt of plain lines."""
    for raw in raw_lines(stream, max_line_bytes):
        where = f"{source}:{raw.number}"
        try:
            text = decode(raw, source, max_line_bytes)
            yield _parse_json_line(text, where, raw.number, system)
        except LineError as e:
            yield InputItem(raw.number, e.id or str(raw.number), None, e.message)


def _parse_json_line(text: str, where: str, line: int, system: str | None) -> InputItem:
    if not text.strip():
        raise LineError(
            f"{where}: empty line; expected one JSON object per line, such as {_PROMPT_SHAPES}"
        )
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        reason = e.msg.split(": line ")[0]
        raise LineError(
            f"{where}: malformed JSON at column {e.pos + 1}: {reason}; expected one JSON object per line",
            recover_id(text),
        ) from None
    if not isinstance(obj, dict):
        raise LineError(
            f"{where}: expected a JSON object such as {_PROMPT_SHAPES}, got {json_type(obj)}"
        )
    if "custom_id" in obj or ("body" in obj and "url" in obj):
        return _batch_item(obj, where, line)
    return _plain_item(obj, where, line, system)


def _plain_item(obj: dict[str, Any], where: str, line: int, system: str | None) -> InputItem:
    id = optional_id_field(obj, "id", where) or str(line)
    try:
        line_system = optional_field(obj, "system", str, "a string", where)
        if line_system is not None:
            system = line_system
        has_prompt, has_messages = "prompt" in obj, "messages" in obj
        if has_prompt and has_messages:
            raise LineError(
                f'{where}: has both "prompt" and "messages"; give one: {_PROMPT_SHAPES}'
            )
        if has_prompt:
            prompt = obj["prompt"]
            if not isinstance(prompt, str) or not prompt.strip():
                raise LineError(
                    f'{where}: field "prompt" must be a non-empty string, got {show_value(prompt)}'
                )
            messages: list[Message] = [{"role": "user", "content": prompt}]
        elif has_messages:
            messages = messages_field(obj["messages"], where, '"messages"')
            if any(m["role"] == "system" for m in messages) and line_system is not None:
                raise LineError(
                    f'{where}: field "system" conflicts with the system message in "messages"; give one'
                )
        else:
            raise LineError(f'{where}: no "prompt" or "messages" field; expected {_PROMPT_SHAPES}')
        if system and not any(m["role"] == "system" for m in messages):
            messages.insert(0, {"role": "system", "content": system})
        request = Request(
            messages=tuple(messages),
            id=id,
            model=optional_field(obj, "model", str, "a non-empty string", where, nonempty=True),
            max_tokens=max_tokens_field(obj, "max_tokens", where),
            temperature=temperature_field(obj, "temperature", where),
            metadata=obj.get("metadata"),
        )
    except LineError as e:
        e.id = id
        raise
    # Ids are strings inside llmgather; an integer id goes back out as the integer it was.
    as_given = {"id": obj["id"]} if isinstance(obj.get("id"), int) else None
    return InputItem(line, id, request, None, as_given)


def _batch_item(obj: dict[str, Any], where: str, line: int) -> InputItem:
    custom_id = obj.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise LineError(
            f'{where}: Batch API line: field "custom_id" must be a non-empty string, got {show_value(custom_id)}'
        )
    try:
        method = obj.get("method", "POST")
        if method != "POST":
            raise LineError(
                f'{where}: Batch API line: field "method" must be "POST", got {show_value(method)}'
            )
        url = obj.get("url")
        if url not in _BATCH_URLS:
            raise LineError(
                f'{where}: Batch API line: field "url" is {show_value(url)}; supported: {", ".join(_BATCH_URLS)}'
            )
        body = obj.get("body")
        if not isinstance(body, dict):
            raise LineError(
                f'{where}: Batch API line: field "body" must be an object, got {json_type(body)}'
            )
        if "messages" not in body:
            raise LineError(
                f'{where}: Batch API line: field "body.messages" is missing; expected a list of messages'
            )
        token_key = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
        request = Request(
            messages=tuple(messages_field(body["messages"], where, '"body.messages"')),
            id=custom_id,
            model=optional_field(
                body, "model", str, "a non-empty string", where, nonempty=True, prefix="body."
            ),
            max_tokens=max_tokens_field(body, token_key, where, prefix="body."),
            temperature=temperature_field(body, "temperature", where, prefix="body."),
            metadata=body.get("metadata"),
            extra={k: v for k, v in body.items() if k not in _BATCH_BODY_READ} or None,
        )
    except LineError as e:
        e.id = custom_id
        raise
    return InputItem(line, custom_id, request, None, {"custom_id": custom_id})
