"""Input readers: turn JSONL, OpenAI Batch, CSV and text files into a stream of InputItems.

Every line becomes exactly one InputItem. A line that cannot become a request is not an
exception: it is an item with `request=None` and an `error` that names the file, the line, the
field, what was found and what is expected, so one bad line never stops the other million.
Files are read in binary, one bounded line at a time, so memory does not depend on file size
or on the length of the longest line.
"""

from __future__ import annotations

import codecs
import csv
import os
import re
import sys
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

import orjson

from ._errors import InvalidInputError
from ._types import Message, Request

__all__ = ["FORMATS", "InputItem", "detect_format", "read_inputs"]

FORMATS = ("jsonl", "csv", "txt")
_EXTENSIONS = {
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".txt": "txt",
}
_ROLES = ("system", "user", "assistant")
_BATCH_URLS = ("/v1/chat/completions",)
_PROMPT_SHAPES = '{"prompt": "..."} or {"messages": [{"role": "user", "content": "..."}]}'
_BOM = codecs.BOM_UTF8


@dataclass(frozen=True, slots=True)
class InputItem:
    """One input line: a request to send, or the reason it cannot be sent."""

    line: int
    id: str
    request: Request | None
    error: str | None
    output_fields: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.request is not None


class _LineError(Exception):
    """A problem with one line; `id` is the line's own id when it could be recovered."""

    def __init__(self, message: str, id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.id = id


def detect_format(path: str, fmt: str | None = None) -> str:
    """The input format: `fmt` if given, else from the extension; standard input is JSONL."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise InvalidInputError(
                f"unknown input format {fmt!r}; expected one of {', '.join(FORMATS)}"
            )
        return fmt
    if path == "-":
        return "jsonl"
    ext = os.path.splitext(path)[1].lower()
    try:
        return _EXTENSIONS[ext]
    except KeyError:
        known = ", ".join(sorted(_EXTENSIONS))
        raise InvalidInputError(
            f"cannot tell the format of {path!r} from its extension {ext or '(none)'!r}; "
            f"use one of {known} or pass --format {{{','.join(FORMATS)}}}"
        ) from None


def read_inputs(
    path: str,
    *,
    fmt: str | None = None,
    column: str | None = None,
    id_column: str | None = None,
    system: str | None = None,
    max_line_bytes: int = 1_048_576,
    display_name: str | None = None,
) -> Generator[InputItem, None, None]:
    """Yield one InputItem per input line (per CSV record; per non-blank line of a .txt file).

    `display_name` is what messages call the file (standard input spooled to a temporary file is
    still "<stdin>" to the user). Items come in ascending `line` order. Errors about the whole file (it cannot be opened, a CSV
    without the column) raise InvalidInputError or OSError on the first `next()`.
    """
    fmt = detect_format(display_name or path, fmt)
    source = "<stdin>" if (display_name or path) == "-" else (display_name or path)
    with _open_binary(path) as stream:
        if fmt == "jsonl":
            yield from _read_jsonl(stream, source, system, max_line_bytes)
        elif fmt == "txt":
            yield from _read_txt(stream, source, system, max_line_bytes)
        else:
            if not column:
                raise InvalidInputError(
                    f"{source}: CSV input needs --column NAME to say which column holds the prompt"
                )
            yield from _read_csv(stream, source, column, id_column, system, max_line_bytes)


@contextmanager
def _open_binary(path: str) -> Iterator[IO[bytes]]:
    if path == "-":
        yield sys.stdin.buffer
        return
    with open(path, "rb") as f:
        yield f


# ---------------------------------------------------------------------------------------------
# Bounded line reading


@dataclass(slots=True)
class _RawLine:
    number: int
    offset: int  # byte offset of the line's start in the file
    data: bytes | None  # None when the line is longer than the limit
    size: int  # the line's length in bytes, without its line ending


def _raw_lines(stream: IO[bytes], max_line_bytes: int) -> Iterator[_RawLine]:
    """Lines without their ending; an overlong line is skipped to its newline, never held whole."""
    number, offset = 0, 0
    chunk = max(max_line_bytes + 2, 65_536)
    while True:
        raw = stream.readline(max_line_bytes + 2)
        if not raw:
            return
        number += 1
        start, size = offset, len(raw)
        if not raw.endswith(b"\n") and len(raw) == max_line_bytes + 2:
            while more := stream.readline(chunk):  # drop the rest of the line, chunk by chunk
                size += len(more)
                if more.endswith(b"\n"):
                    break
            offset += size
            yield _RawLine(number, start, None, size - more.endswith(b"\n"))
            continue
        offset += size
        data = raw.removesuffix(b"\n").removesuffix(b"\r")
        if number == 1 and data.startswith(_BOM):
            data, start = data[len(_BOM) :], start + len(_BOM)
        yield _RawLine(number, start, data if len(data) <= max_line_bytes else None, len(data))


def _decode(raw: _RawLine, source: str, max_line_bytes: int) -> str:
    if raw.data is None:
        raise _LineError(
            f"{source}:{raw.number}: line is {raw.size:,} bytes, longer than the limit of "
            f"{max_line_bytes:,} bytes (raise it with --max-line-bytes); the line was skipped"
        )
    try:
        return raw.data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _LineError(
            f"{source}:{raw.number}: invalid UTF-8 at byte offset {e.start} in the line "
            f"(offset {raw.offset + e.start} in the file): {raw.data[e.start : e.start + 4]!r}; "
            "the input must be encoded as UTF-8"
        ) from None


# ---------------------------------------------------------------------------------------------
# JSONL (plain and OpenAI Batch API request lines)


def _read_jsonl(
    stream: IO[bytes], source: str, system: str | None, max_line_bytes: int
) -> Iterator[InputItem]:
    for raw in _raw_lines(stream, max_line_bytes):
        where = f"{source}:{raw.number}"
        try:
            text = _decode(raw, source, max_line_bytes)
            yield _parse_json_line(text, where, raw.number, system)
        except _LineError as e:
            yield InputItem(raw.number, e.id or str(raw.number), None, e.message)


def _parse_json_line(text: str, where: str, line: int, system: str | None) -> InputItem:
    if not text.strip():
        raise _LineError(
            f"{where}: empty line; expected one JSON object per line, such as {_PROMPT_SHAPES}"
        )
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        reason = e.msg.split(": line ")[0]
        raise _LineError(
            f"{where}: malformed JSON at column {e.pos + 1}: {reason}; expected one JSON object per line",
            _recover_id(text),
        ) from None
    if not isinstance(obj, dict):
        raise _LineError(
            f"{where}: expected a JSON object such as {_PROMPT_SHAPES}, got {_json_type(obj)}"
        )
    if "custom_id" in obj or ("body" in obj and "url" in obj):
        return _batch_item(obj, where, line)
    return _plain_item(obj, where, line, system)


def _plain_item(obj: dict[str, Any], where: str, line: int, system: str | None) -> InputItem:
    id = _optional_id(obj, "id", where) or str(line)
    try:
        line_system = _optional(obj, "system", str, "a string", where)
        if line_system is not None:
            system = line_system
        has_prompt, has_messages = "prompt" in obj, "messages" in obj
        if has_prompt and has_messages:
            raise _LineError(
                f'{where}: has both "prompt" and "messages"; give one: {_PROMPT_SHAPES}'
            )
        if has_prompt:
            prompt = obj["prompt"]
            if not isinstance(prompt, str) or not prompt.strip():
                raise _LineError(
                    f'{where}: field "prompt" must be a non-empty string, got {_show(prompt)}'
                )
            messages: list[Message] = [{"role": "user", "content": prompt}]
        elif has_messages:
            messages = _messages(obj["messages"], where, '"messages"')
            if any(m["role"] == "system" for m in messages) and line_system is not None:
                raise _LineError(
                    f'{where}: field "system" conflicts with the system message in "messages"; give one'
                )
        else:
            raise _LineError(f'{where}: no "prompt" or "messages" field; expected {_PROMPT_SHAPES}')
        if system and not any(m["role"] == "system" for m in messages):
            messages.insert(0, {"role": "system", "content": system})
        request = Request(
            messages=tuple(messages),
            id=id,
            model=_optional(obj, "model", str, "a non-empty string", where, nonempty=True),
            max_tokens=_max_tokens(obj, "max_tokens", where),
            temperature=_temperature(obj, "temperature", where),
            metadata=obj.get("metadata"),
        )
    except _LineError as e:
        e.id = id
        raise
    return InputItem(line, id, request, None)


# Body fields a Batch API line sets that llmgather reads itself; every other field (response_format,
# seed, stop, max_completion_tokens...) goes to the provider as written. max_completion_tokens is
# also read, for the token estimate. `stream` is llmgather's choice (`--stream`), and `metadata` is
# passed through to the output line.
_BATCH_BODY_READ = frozenset(
    {"messages", "model", "max_tokens", "temperature", "metadata", "stream", "stream_options"}
)


def _batch_item(obj: dict[str, Any], where: str, line: int) -> InputItem:
    custom_id = obj.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise _LineError(
            f'{where}: Batch API line: field "custom_id" must be a non-empty string, got {_show(custom_id)}'
        )
    try:
        method = obj.get("method", "POST")
        if method != "POST":
            raise _LineError(
                f'{where}: Batch API line: field "method" must be "POST", got {_show(method)}'
            )
        url = obj.get("url")
        if url not in _BATCH_URLS:
            raise _LineError(
                f'{where}: Batch API line: field "url" is {_show(url)}; supported: {", ".join(_BATCH_URLS)}'
            )
        body = obj.get("body")
        if not isinstance(body, dict):
            raise _LineError(
                f'{where}: Batch API line: field "body" must be an object, got {_json_type(body)}'
            )
        if "messages" not in body:
            raise _LineError(
                f'{where}: Batch API line: field "body.messages" is missing; expected a list of messages'
            )
        token_key = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
        request = Request(
            messages=tuple(_messages(body["messages"], where, '"body.messages"')),
            id=custom_id,
            model=_optional(
                body, "model", str, "a non-empty string", where, nonempty=True, prefix="body."
            ),
            max_tokens=_max_tokens(body, token_key, where, prefix="body."),
            temperature=_temperature(body, "temperature", where, prefix="body."),
            metadata=body.get("metadata"),
            extra={k: v for k, v in body.items() if k not in _BATCH_BODY_READ} or None,
        )
    except _LineError as e:
        e.id = custom_id
        raise
    return InputItem(line, custom_id, request, None, {"custom_id": custom_id})


def _messages(value: Any, where: str, name: str) -> list[Message]:
    if not isinstance(value, list) or not value:
        got = "an empty list" if value == [] else _show(value)
        raise _LineError(
            f'{where}: field {name} must be a non-empty list of {{"role": ..., "content": ...}} objects, got {got}'
        )
    messages: list[Message] = []
    for i, m in enumerate(value):
        at = f'{name[:-1]}[{i}]"'
        if not isinstance(m, dict):
            raise _LineError(
                f'{where}: field {at} must be an object with "role" and "content", got {_json_type(m)}'
            )
        role = "system" if m.get("role") == "developer" else m.get("role")
        if role not in _ROLES:
            raise _LineError(
                f'{where}: field {at[:-1]}.role" must be one of {", ".join(_ROLES)}, got {_show(m.get("role"))}'
            )
        messages.append(
            {"role": role, "content": _content(m.get("content"), where, f'{at[:-1]}.content"')}
        )
    return messages


def _content(value: Any, where: str, at: str) -> str:
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
    raise _LineError(
        f'{where}: field {at} must be a string or a list of {{"type": "text", "text": ...}} parts, got {_show(value)}'
    )


def _optional_id(obj: dict[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise _LineError(
        f'{where}: field "{key}" must be a non-empty string or an integer, got {_show(value)}'
    )


def _optional(
    obj: dict[str, Any],
    key: str,
    kind: type,
    expected: str,
    where: str,
    *,
    nonempty: bool = False,
    prefix: str = "",
) -> Any:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or (nonempty and not value):
        raise _LineError(f'{where}: field "{prefix}{key}" must be {expected}, got {_show(value)}')
    return value


def _max_tokens(obj: dict[str, Any], key: str, where: str, *, prefix: str = "") -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _LineError(
            f'{where}: field "{prefix}{key}" must be a positive integer, got {_show(value)}'
        )
    return value


def _temperature(obj: dict[str, Any], key: str, where: str, *, prefix: str = "") -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 2:
        raise _LineError(
            f'{where}: field "{prefix}{key}" must be a number from 0 to 2, got {_show(value)}'
        )
    return float(value)


_ID_PATTERN = re.compile(r'"(?:custom_id|id)"\s*:\s*(?:"((?:[^"\\]|\\.){1,200})"|(-?\d{1,20})\b)')


def _recover_id(text: str) -> str | None:
    """Best effort: the id of a line whose JSON is broken, so its result keeps the caller's id."""
    match = _ID_PATTERN.search(text)
    if match is None:
        return None
    if match.group(2) is not None:
        return match.group(2)
    try:
        value = orjson.loads(f'"{match.group(1)}"')
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, str) and value else None


def _show(value: Any) -> str:
    """A short JSON rendering of a bad value for an error message."""
    if value is None:
        return "null"
    text = orjson.dumps(value).decode() if _json_type(value) != "?" else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _json_type(value: Any) -> str:
    for kind, name in ((bool, "a boolean"), (int, "a number"), (float, "a number"), (str, "a string"),
                       (list, "an array"), (dict, "an object")):  # fmt: skip
        if isinstance(value, kind):
            return name
    return "null" if value is None else "?"


# ---------------------------------------------------------------------------------------------
# Text and CSV


def _read_txt(
    stream: IO[bytes], source: str, system: str | None, max_line_bytes: int
) -> Iterator[InputItem]:
    for raw in _raw_lines(stream, max_line_bytes):
        id = str(raw.number)
        try:
            text = _decode(raw, source, max_line_bytes)
        except _LineError as e:
            yield InputItem(raw.number, id, None, e.message)
            continue
        if text.strip():
            yield InputItem(raw.number, id, Request.from_prompt(text, system=system, id=id), None)


def _read_csv(
    stream: IO[bytes],
    source: str,
    column: str,
    id_column: str | None,
    system: str | None,
    max_line_bytes: int,
) -> Iterator[InputItem]:
    bad_lines: dict[int, str] = {}  # only lines not yet consumed by a record; pruned as we go
    reader = csv.reader(_csv_text_lines(stream, source, max_line_bytes, bad_lines), strict=True)
    # The csv module's per-field cap is process-wide; raise it to at least our per-line cap.
    csv.field_size_limit(max(csv.field_size_limit(), max_line_bytes))
    try:
        header = next(reader)
    except StopIteration:
        raise InvalidInputError(
            f"{source}: the CSV file is empty; expected a header row naming the columns"
        ) from None
    names = ", ".join(repr(h) for h in header)
    for wanted, flag in ((column, "--column"), (id_column, "--id-column")):
        if wanted is not None and wanted not in header:
            raise InvalidInputError(
                f"{source}: {flag} {wanted!r} is not a column of the CSV header; the columns are: {names}"
            )
    prompt_at = header.index(column)
    id_at = header.index(id_column) if id_column is not None else None
    end = reader.line_num
    while True:
        start = end + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            end = reader.line_num
            for n in range(start, end + 1):
                bad_lines.pop(n, None)
            yield InputItem(start, str(start), None, f"{source}:{start}: malformed CSV record: {e}")
            continue
        end = reader.line_num
        yield _csv_item(
            row, start, end, source, bad_lines, prompt_at, id_at, column, id_column, system
        )


def _csv_item(
    row: list[str], start: int, end: int, source: str, bad_lines: dict[int, str],
    prompt_at: int, id_at: int | None, column: str, id_column: str | None, system: str | None,
) -> InputItem:  # fmt: skip
    id = row[id_at] if id_at is not None and id_at < len(row) and row[id_at] else str(start)
    problems = [bad_lines.pop(n) for n in range(start, end + 1) if n in bad_lines]
    if problems:
        return InputItem(start, id, None, problems[0])
    where = f"{source}:{start}"
    if not row:
        return InputItem(
            start, id, None, f'{where}: empty line; expected a CSV record with a "{column}" column'
        )
    if id_at is not None and not (id_at < len(row) and row[id_at]):
        return InputItem(
            start,
            id,
            None,
            f'{where}: column "{id_column}" (the id) is empty; expected a non-empty id',
        )
    if prompt_at >= len(row):
        return InputItem(
            start,
            id,
            None,
            f'{where}: record has {len(row)} fields, so no column "{column}"; expected the header\'s columns',
        )
    prompt = row[prompt_at]
    if not prompt.strip():
        return InputItem(
            start, id, None, f'{where}: column "{column}" is empty; expected the prompt text'
        )
    return InputItem(start, id, Request.from_prompt(prompt, system=system, id=id), None)


def _csv_text_lines(
    stream: IO[bytes], source: str, max_line_bytes: int, bad_lines: dict[int, str]
) -> Iterator[str]:
    """Decoded lines for the csv module; a line that cannot be decoded is noted and blanked."""
    for raw in _raw_lines(stream, max_line_bytes):
        try:
            text = _decode(raw, source, max_line_bytes)
        except _LineError as e:
            bad_lines[raw.number] = e.message
            # Keep the line's shape (quotes, the id) so the record around it is still found.
            text = "" if raw.data is None else raw.data.decode("utf-8", "replace")
        yield text + "\n"
