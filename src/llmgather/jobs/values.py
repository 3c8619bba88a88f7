"""A callable's return value as the JSON of its output line's `value`, made once per result.

A str, number, bool, None, dict or list is written as it is; a LangChain message as its
`content` (with its `tool_calls` beside it when it made some); a pydantic model as its
`model_dump`; anything else (inside a dict or list too) as its `str()`. A value that still
cannot be written (nested past orjson's depth) is written as its `str()`: one odd value must
never stop the job's writer.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import orjson

__all__ = ["json_fragment"]


def json_fragment(value: Any, scrub: Callable[[bytes], bytes] | None = None) -> orjson.Fragment:
    """`value` as JSON, ready to be set in an output line's object without a second encoding;
    `scrub` takes out what must not be stored (the secrets a server may have echoed)."""
    try:
        data = orjson.dumps(value, default=_plain, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        data = orjson.dumps(str(value))
    return orjson.Fragment(data if scrub is None else scrub(data))


def _plain(value: Any) -> Any:
    """What orjson writes for a type it does not know (it calls this for each one it meets)."""
    message = _langchain_message(value)
    if message is not None:
        return message
    if isinstance(value, set | frozenset):
        return list(value)
    dump = getattr(value, "model_dump", None)  # a pydantic model
    if callable(dump):
        try:
            return dump(mode="json")
        except Exception:  # a model whose own serialiser fails: its printed form will do
            return str(value)
    return str(value)


def _langchain_message(value: Any) -> Any:
    # Only when LangChain is loaded: a value can be one of its messages only then.
    messages = sys.modules.get("langchain_core.messages")
    if messages is None or not isinstance(value, messages.BaseMessage):
        return None
    tool_calls = getattr(value, "tool_calls", None)
    if tool_calls:
        return {"content": value.content, "tool_calls": tool_calls}
    return value.content
