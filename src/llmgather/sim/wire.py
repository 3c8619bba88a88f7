"""Small formatting helpers the dialects share: durations, timestamps, ids, key masking."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import os
import time


def go_duration(seconds: float) -> str:
    """A duration as OpenAI's `x-ratelimit-reset-*` headers write it: "120ms", "1.5s", "6m0s".

    Rounded up to the millisecond, so it is never shorter than the wait it reports (and
    59.9999 s reads "1m0s", not "60s").
    """
    if seconds <= 0:
        return "0s"
    ms = math.ceil(seconds * 1000 - 1e-6)
    if ms < 1000:
        return f"{max(1, ms)}ms"
    minutes, ms = divmod(ms, 60_000)
    hours, minutes = divmod(minutes, 60)
    whole, frac = divmod(ms, 1000)
    text = (f"{whole}.{frac:03d}".rstrip("0").rstrip(".") if frac else str(whole)) + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    if minutes:
        return f"{minutes}m{text}"
    return text


def ceil_seconds(seconds: float) -> int:
    """Whole seconds rounded up, at least 1 when there is any wait (a 0 would invite a hot loop)."""
    return max(1, math.ceil(seconds - 1e-9)) if seconds > 0 else 0


def ceil_ms(seconds: float) -> int:
    return math.ceil(seconds * 1000 - 1e-9) if seconds > 0 else 0


def rfc3339_in(seconds: float) -> str:
    """The wall-clock time `seconds` from now, as Anthropic's `*-reset` headers write it."""
    moment = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=max(0.0, seconds))
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def mask_key(key: str) -> str:
    """A key as an error message may show it: at most its first 3 and last 2 characters."""
    if len(key) < 10:
        return "*" * len(key)
    return f"{key[:3]}{'*' * (len(key) - 5)}{key[-2:]}"


class IdMaker:
    """Unique, provider-looking ids without a random draw per request."""

    __slots__ = ("_counter", "_prefix")

    def __init__(self) -> None:
        self._prefix = os.urandom(4).hex()
        self._counter = itertools.count(1)

    def make(self, prefix: str) -> str:
        return f"{prefix}{self._prefix}{next(self._counter):016x}"


def unix_time() -> int:
    return int(time.time())
