"""Talking to Redis, for the shared limiter and the work queue: one way to connect, and one
way to ride out a restart (a few retries, then a clear `RedisUnavailableError`).

The `redis` package is optional (`pip install 'llmgather[redis]'`): it is imported here, when
a Redis URL is first used, never by `import llmgather`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from llmgather._errors import ConfigurationError, RedisUnavailableError
from llmgather._redact import redact_url

T = TypeVar("T")

SCHEMES = ("redis://", "rediss://", "unix://")


def connect(url: str, *, what: str) -> Any:
    """A `redis.asyncio.Redis` for `url` (it connects on first use); `what` names the option
    that gave the URL, for the error."""
    if not url.startswith(SCHEMES):
        raise ConfigurationError(
            f"{what} {redact_url(url)!r} is not a Redis URL: give redis://HOST:PORT/DB "
            "(rediss:// for TLS, unix:///path/to/redis.sock)"
        )
    try:
        import redis.asyncio
    except ImportError as error:  # pragma: no cover - the test extra installs it
        raise ConfigurationError(
            f"{what} needs the redis package: pip install 'llmgather[redis]'"
        ) from error
    return redis.asyncio.from_url(url, socket_connect_timeout=2.0, socket_timeout=10.0)


def connection_errors() -> tuple[type[BaseException], ...]:
    import redis.exceptions

    return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


async def retried(call: Callable[[], Awaitable[T]], url: str, *, attempts: int) -> T:
    """`call`, retried with doubling waits from 0.1 s while Redis does not answer, then
    `RedisUnavailableError` naming the URL (its password hidden)."""
    import redis.exceptions

    last: BaseException | None = None
    for attempt in range(attempts):
        try:
            return await call()
        except redis.exceptions.AuthenticationError as error:
            # A subclass of ConnectionError, but no outage: waiting will not change the answer.
            raise RedisUnavailableError(
                f"Redis at {redact_url(url)} refused the password or user the URL gives "
                f"({error}): give the right one in the URL (redis://:PASSWORD@HOST:PORT/DB)"
            ) from None
        except connection_errors() as error:
            last = error
            if attempt + 1 < attempts:
                await asyncio.sleep(min(2.0, 0.1 * 2**attempt))  # real time: Redis is real
    raise RedisUnavailableError(
        f"Redis at {redact_url(url)} does not answer ({type(last).__name__}: {last}): check "
        "that it runs there, or give another URL"
    )
