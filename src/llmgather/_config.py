"""One vocabulary for configuration: the names and defaults every entry point uses.

The CLI, `Client`, `JobOptions` and the service all say `concurrency`, `rpm`, `rpd`, `tpm`,
`itpm`, `otpm`, `timeout` and `max_attempts`, with the defaults below, so a setting means the
same thing wherever it is given.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_CONCURRENCY = 64
DEFAULT_TIMEOUT_S = 120.0
DEFAULT_CONNECT_TIMEOUT_S = 10.0
DEFAULT_MAX_ATTEMPTS = 6


@dataclass(frozen=True, kw_only=True, slots=True)
class Limits:
    """What a limiter enforces. `None` means no limit of that kind.

    `rpm`/`rpd`: requests per minute / per day; `tpm`: tokens (input + output) per minute;
    `itpm`/`otpm`: input and output tokens per minute, counted apart (Anthropic's limits).
    A day's requests are not paced: they go as fast as the other limits allow, then wait until
    the first of them is a day old (a sliding 24-hour window, see `limits.budgets`).

    `burst_seconds` is how much of a per-minute budget may go out at once. Providers enforce
    per-minute limits over short windows ("60,000 RPM may be enforced as 1,000 requests per
    second"), so a client that fires a whole minute's budget at once is rejected. Half a second
    keeps llmgather's pace smooth and leaves the server's own burst allowance as headroom.
    """

    concurrency: int = DEFAULT_CONCURRENCY
    rpm: float | None = None
    rpd: float | None = None
    tpm: float | None = None
    itpm: float | None = None
    otpm: float | None = None
    burst_seconds: float = 0.5

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        for name in ("rpm", "rpd", "tpm", "itpm", "otpm"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")


@dataclass(frozen=True, kw_only=True, slots=True)
class Timeouts:
    """`read`: how long a whole plain answer may take, or, for a stream, the longest silence
    between two chunks; `connect`: how long opening a connection may take."""

    connect: float = DEFAULT_CONNECT_TIMEOUT_S
    read: float = DEFAULT_TIMEOUT_S
