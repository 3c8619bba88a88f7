"""A cached answer's key: a hash of the exact request as sent to the provider after
translation, less its bookkeeping, with a format version.

    Request ─▶ adapter.build_request(stream=False) ─▶ (provider, endpoint, body) ─▶ sha256

The body is the adapter's own (the bytes the provider would receive), read back as JSON and
written again with sorted keys, so the same request always gives the same key however its
fields were ordered. The stream flag and its options, and fields that only label a request
(`metadata`, `user`, `store`), are left out: they do not change the answer. The request's
`id`, its timeouts and the API key never reach the body, so they are not in the key either.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import orjson

__all__ = ["FORMAT_VERSION", "SIMULATOR_HOST", "endpoint_of", "request_key"]

# Raised whenever what is keyed or stored changes shape: every older entry then misses.
FORMAT_VERSION = 1

# The embedded simulator listens on a fresh port at every start: its answers depend on the
# request alone, so every run's simulator is one endpoint.
SIMULATOR_HOST = "llmgather-simulator"

# Body fields that label or deliver a request without changing its answer.
_BOOKKEEPING = frozenset({"stream", "stream_options", "metadata", "user", "store"})
# Query parameters that carry a key (Gemini's `?key=`) or a delivery mode (`alt=sse`).
_QUERY_BOOKKEEPING = frozenset({"key", "alt", "api-key", "api_key"})


@functools.lru_cache(maxsize=64)  # a link sends to one URL per model: parsed once, not per item
def endpoint_of(url: str, *, simulated: bool = False) -> str:
    """The endpoint a request goes to, as keyed: host, port and path, and the query less any
    key or delivery mode. Credentials in the URL are never part of it."""
    parts = urlsplit(url)
    host = SIMULATOR_HOST if simulated else parts.netloc.rpartition("@")[2].lower()
    query = [(k, v) for k, v in parse_qsl(parts.query) if k.lower() not in _QUERY_BOOKKEEPING]
    return f"{host}{parts.path}" + (f"?{urlencode(sorted(query))}" if query else "")


def request_key(provider: str, endpoint: str, body: bytes | dict[str, Any]) -> str:
    """The key of the request `body` (as sent, JSON) to `provider` at `endpoint`."""
    data = orjson.loads(body) if isinstance(body, bytes) else body
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in _BOOKKEEPING}
    canonical = orjson.dumps(
        {"version": FORMAT_VERSION, "provider": provider, "endpoint": endpoint, "body": data},
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(canonical).hexdigest()
