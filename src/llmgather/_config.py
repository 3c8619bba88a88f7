"""One vocabulary for configuration: the names and defaults every entry point uses.

The CLI, `Client`, `JobOptions` and the service all say `concurrency`, `rpm`, `rpd`, `tpm`,
`itpm`, `otpm`, `timeout` and `max_attempts`, with the defaults below, so a setting means the
same thing wherever it is given. A `Limits` is built once where the user gives it (a CLI flag,
a keyword) and carried whole from there.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from llmgather._errors import ConfigurationError

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

    `max_cost`: a hard budget in USD, a cap rather than a rate (see `limits.cap`): each send
    reserves its worst-case cost, settled with the real one, and once the next reservation
    can never fit nothing more is sent (`BudgetExhaustedError`).
    """

    concurrency: int = DEFAULT_CONCURRENCY
    rpm: float | None = None
    rpd: float | None = None
    tpm: float | None = None
    itpm: float | None = None
    otpm: float | None = None
    max_cost: float | None = None
    burst_seconds: float = 0.5

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        for name, value in self.budgets().items():
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")

    def budgets(self) -> dict[str, float | None]:
        """Every budget's limit by name ("rpm", "tpm"…), `None` where none is set: each field
        but `concurrency` and `burst_seconds` is a budget of `limits.budgets.KINDS`."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _NOT_BUDGETS}


_NOT_BUDGETS = frozenset({"concurrency", "burst_seconds"})


@dataclass(frozen=True, kw_only=True, slots=True)
class Timeouts:
    """`read`: how long a whole plain answer may take, or, for a stream, the longest silence
    between two chunks; `connect`: how long opening a connection may take."""

    connect: float = DEFAULT_CONNECT_TIMEOUT_S
    read: float = DEFAULT_TIMEOUT_S


def limits_given(
    limits: Limits | None,
    *,
    concurrency: int | None = None,
    rpm: float | None = None,
    rpd: float | None = None,
    tpm: float | None = None,
    itpm: float | None = None,
    otpm: float | None = None,
    max_cost: float | None = None,
) -> Limits:
    """`limits`, or the `Limits` that the flat keywords beside it on a public signature spell
    (`Client`, `run_job`: they keep the keywords they had; a newer kind of budget is given in
    `Limits` only); both at once is a ConfigurationError naming the keywords."""
    flat = dict(concurrency=concurrency, rpm=rpm, rpd=rpd, tpm=tpm, itpm=itpm, otpm=otpm)
    named = ", ".join(f"{name}=" for name, value in flat.items() if value is not None)
    if limits is None:
        concurrency = DEFAULT_CONCURRENCY if concurrency is None else concurrency
        return Limits(
            concurrency=concurrency, rpm=rpm, rpd=rpd, tpm=tpm, itpm=itpm, otpm=otpm,
            max_cost=max_cost,
        )  # fmt: skip
    if named:
        raise ConfigurationError(f"give limits=Limits(...) or {named}, not both")
    if max_cost is not None:
        # A cap beside a Limits given whole: the two together, unless it has its own.
        if limits.max_cost is not None and limits.max_cost != max_cost:
            raise ConfigurationError("give max_cost= or Limits(max_cost=...), not both")
        return replace(limits, max_cost=max_cost)
    return limits
