"""JSONL input: plain prompt/messages lines and OpenAI Batch API request lines, told apart per line."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import IO, Any

import orjson

from llmgather._errors import InvalidInputError
from llmgather._prompt import PROMPT_FIELDS, request_from_dict
from llmgather._types import Request
from llmgather.jobs.inputs.fields import (
    MAX_NESTING,
    check_nesting,
    json_type,
    max_tokens_field,
    messages_field,
    optional_field,
    optional_id_field,
    recover_id,
    show_value,
    temperature_field,
)
from llmgather.jobs.inputs.item import InputItem, LineError, item_digest
from llmgather.jobs.inputs.lines import decode, raw_lines
from llmgather.jobs.inputs.unknown import UnknownFields

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
# The fields each kind of line may have. A Batch line's `body` is the provider's own request and
# passes through whole, so only its top level is checked.
# A plain line is a prompt dict as the library reads one, less `extra` (provider-native body
# fields): a file of prompts may go to any provider, so it is not read from a line (a Batch
# API line's body carries OpenAI's).
_PLAIN_FIELDS = PROMPT_FIELDS - {"extra"}
_BATCH_FIELDS = frozenset({"custom_id", "method", "url", "body"})


def read_jsonl(
    stream: IO[bytes],
    source: str,
    system: str | None,
    max_line_bytes: int,
    warn: Callable[[str], None] | None = None,
) -> Iterator[InputItem]:
    """One InputItem per line; `system` is the default system prompt of plain lines.

    `warn`, if given, hears once about each unknown field name (a misspelt `max_token`).
    """
    unknown = UnknownFields(source, warn) if warn is not None else None
    for raw in raw_lines(stream, max_line_bytes, source):
        where = f"{source}:{raw.number}"
        digest = item_digest(raw.data) if raw.data is not None else None
        try:
            text = decode(raw, source, max_line_bytes)
            yield _parse_json_line(text, where, raw.number, system, unknown, digest)
        except LineError as e:
            id = e.id or str(raw.number)
            yield InputItem(raw.number, id, None, e.message, e.output_fields, digest)


def _parse_json_line(
    text: str,
    where: str,
    line: int,
    system: str | None,
    unknown: UnknownFields | None,
    digest: bytes | None,
) -> InputItem:
    if not text.strip():
        raise LineError(
            f"{where}: empty line; expected one JSON object per line, such as {_PROMPT_SHAPES}"
        )
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        reason = e.msg.split(": line ")[0]
        recovered = recover_id(text)
        key, id = recovered if recovered is not None else ("id", None)
        raise LineError(
            f"{where}: malformed JSON at column {e.pos + 1}: {reason}; expected one JSON object per line",
            id,
            {"custom_id": id} if key == "custom_id" else None,
        ) from None
    if not isinstance(obj, dict):
        raise LineError(
            f"{where}: expected a JSON object such as {_PROMPT_SHAPES}, got {json_type(obj)}"
        )
    batch = "custom_id" in obj or ("body" in obj and "url" in obj)
    if unknown is not None:
        unknown.check(obj, _BATCH_FIELDS if batch else _PLAIN_FIELDS, line)
    # Counting brackets is cheap and bounds the depth from above (brackets inside strings only
    # make it larger), so the walk of every field runs only for the rare line that could be deep.
    deep = text.count("{") + text.count("[") > MAX_NESTING
    if batch:
        return _batch_item(obj, where, line, deep, digest)
    return _plain_item(obj, where, line, system, deep, digest)


def _plain_item(
    obj: dict[str, Any], where: str, line: int, system: str | None, deep: bool, digest: bytes | None
) -> InputItem:
    id = optional_id_field(obj, "id", where) or str(line)
    # Ids are strings inside llmgather; an integer id goes back out as the integer it was.
    as_given = {"id": obj["id"]} if isinstance(obj.get("id"), int) else None
    try:
        if deep:
            check_nesting(obj, where)
        request = request_from_dict(obj, system=system)  # the library's parser too
    except InvalidInputError as e:
        raise LineError(f"{where}: {e}", id, as_given) from None
    except LineError as e:
        e.id, e.output_fields = id, as_given
        raise
    if not request.id or request.extra is not None:
        request = request.replace(id=request.id or id, extra=None)
    return InputItem(line, id, request, None, as_given, digest)


def _batch_item(
    obj: dict[str, Any], where: str, line: int, deep: bool, digest: bytes | None
) -> InputItem:
    custom_id = obj.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        # Not an id llmgather can use, but the output line still shows what the input gave.
        shown = isinstance(custom_id, str | int) and not isinstance(custom_id, bool)
        given = {"custom_id": custom_id} if shown else None
        raise LineError(
            f'{where}: Batch API line: field "custom_id" must be a non-empty string, got {show_value(custom_id)}',
            output_fields=given,
        )
    try:
        if deep:  # the body's own fields first, so the message names the one to flatten
            body = obj.get("body")
            if isinstance(body, dict):
                check_nesting(body, where, prefix="body.")
            check_nesting({k: v for k, v in obj.items() if k != "body"}, where)
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
        e.id, e.output_fields = custom_id, {"custom_id": custom_id}
        raise
    return InputItem(line, custom_id, request, None, {"custom_id": custom_id}, digest)
