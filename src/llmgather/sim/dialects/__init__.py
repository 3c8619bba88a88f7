"""The provider dialects and the one place that maps a request path to its dialect."""

from __future__ import annotations

from llmgather.sim.dialects.anthropic import DIALECT as ANTHROPIC
from llmgather.sim.dialects.base import (
    BadRequest,
    Dialect,
    ErrorReply,
    SimRequest,
    StreamEvents,
)
from llmgather.sim.dialects.gemini import DIALECT as GEMINI
from llmgather.sim.dialects.openai import DIALECT as OPENAI

__all__ = [
    "ANTHROPIC",
    "GEMINI",
    "OPENAI",
    "BadRequest",
    "Dialect",
    "ErrorReply",
    "Route",
    "SimRequest",
    "StreamEvents",
    "route",
]

# (dialect, model from the path, stream decided by the path: None = the body decides)
Route = tuple[Dialect, str | None, bool | None]

_EXACT: dict[str, Route] = {
    "/v1/chat/completions": (OPENAI, None, None),
    "/chat/completions": (OPENAI, None, None),
    "/v1/messages": (ANTHROPIC, None, None),
}
_GEMINI_PREFIXES = ("/v1beta/models/", "/v1/models/", "/v1alpha/models/")


def route(path: str) -> Route | None:
    """The dialect serving `path`, or None for a path no simulated API has."""
    found = _EXACT.get(path)
    if found is not None:
        return found
    for prefix in _GEMINI_PREFIXES:
        if path.startswith(prefix):
            model, _, method = path[len(prefix) :].partition(":")
            if not model:
                return None
            if method == "generateContent":
                return (GEMINI, model, False)
            if method == "streamGenerateContent":
                return (GEMINI, model, True)
            return None
    return None
