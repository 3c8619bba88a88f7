"""What a job is told, built once at the edge (the CLI, the service, `run_job`) and carried whole.

    JobOptions ─┬─ input   InputOptions   the input file and how its lines are read
                ├─ send    SendOptions    the target, limits, retries, timeouts, request
                │                         defaults, a shared limiter or a work queue
                ├─ flags   JobFlags       restart, force, retry_failed, grace
                └─ output_path

A call job (`jobs.calls.CallJobOptions`) composes the input and the flags with its callable and
has no send options: its sender is handed to the job. `JobSpec` is what a `Job` needs of either.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from llmgather._config import Limits, Timeouts
from llmgather._errors import ConfigurationError
from llmgather._redact import redact_url
from llmgather._retry import RetryPolicy
from llmgather.cache.open import CacheSetting
from llmgather.jobs.inputs import InputItem, detect_format, read_inputs
from llmgather.pricing import Prices, chain
from llmgather.providers.registry import Target

if TYPE_CHECKING:
    from llmgather.sim.config import SimConfig

__all__ = ["InputOptions", "JobFlags", "JobOptions", "JobSpec", "SendOptions"]

DEFAULT_MAX_LINE_BYTES = 1_048_576
DEFAULT_GRACE_S = 30.0


@dataclass(frozen=True, kw_only=True)
class InputOptions:
    """The input file (`-` for standard input) and how its lines are read: `fmt` (by the
    extension when unset), a CSV's `column` and `id_column`, the `system` prompt of every line
    that has none, the longest line taken, and `strict` (refuse the whole file if a line is
    invalid, rather than record such lines as failed items)."""

    path: str
    fmt: str | None = None
    column: str | None = None
    id_column: str | None = None
    system: str | None = None
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    strict: bool = False

    @property
    def shown(self) -> str:
        """The input as messages name it."""
        return "<stdin>" if self.path == "-" else self.path

    def route(self) -> dict[str, Any]:
        """How the input is read (see `JobOptions.route`): each line read is known by its id
        and what is sent for it, so another reading changes only the lines it changes."""
        return {
            "format": detect_format(self.path, self.fmt),
            "column": self.column,
            "id_column": self.id_column,
            "max_line_bytes": self.max_line_bytes,
        }

    def read(
        self, path: str, warn: Callable[[str], None] | None = None
    ) -> Generator[InputItem, None, None]:
        """The items of the input at `path` (`self.path`, or standard input spooled to a file);
        `warn` hears what the input has that is ignored."""
        return read_inputs(
            path,
            fmt=self.fmt,
            column=self.column,
            id_column=self.id_column,
            system=self.system,
            max_line_bytes=self.max_line_bytes,
            display_name=self.path,
            warn=warn,
        )


@dataclass(frozen=True, kw_only=True)
class SendOptions:
    """Where a job's requests go and how: the target (`model`, `base_url`, `api_key`), its
    `limits`, `retry` and `timeouts`, the defaults a request leaves unset (`max_tokens`,
    `temperature`), `stream`, the embedded `simulator`'s config; `limiter` (a Redis URL) shares
    the limits with every process that names it, under `limiter_key`; `queue` (a Redis URL)
    hands the items to workers instead, who choose the target and hold the limits; `prices`
    price each answer (`pricing.chain`: the user's over genai-prices' table, its default)."""

    model: str | None = None
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    limits: Limits = field(default_factory=Limits)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeouts: Timeouts = field(default_factory=Timeouts)
    max_tokens: int | None = None
    temperature: float | None = None
    stream: bool = False
    limiter: str | None = None
    limiter_key: str | None = None
    queue: str | None = None
    queue_name: str = "default"
    simulator: SimConfig | None = None  # for the embedded simulator, when one starts
    prices: Prices | None = None
    # Where answers seen before are read from, before the limiter (`--cache`).
    cache: CacheSetting | None = None

    def defaults(self) -> dict[str, Any]:
        """What fills a request that leaves it unset."""
        return {"max_tokens": self.max_tokens, "temperature": self.temperature}

    def refuse_workers_choices(self) -> None:
        """With a `queue`, the workers choose the target and hold the limits: refuse any of
        those given to the job, by name, rather than ignore it."""
        given = [name for name in ("model", "base_url", "api_key") if getattr(self, name)]
        given += [name for name, value in self.limits.budgets().items() if value is not None]
        given += [name for name in ("limiter", "limiter_key", "stream") if getattr(self, name)]
        if self.cache is not None:
            raise ConfigurationError(
                "--cache: with a work queue the workers send the requests, and they read no "
                "cache yet; run without --queue to answer from one"
            )
        if given:
            raise ConfigurationError(
                f"with a work queue the workers send the requests: {', '.join(given)} are "
                "theirs to set, not the job's"
            )


@dataclass(frozen=True, kw_only=True)
class JobFlags:
    """How a run treats the job already beside its output: `restart` discards it; `force`
    writes over an output file no job store claims (refused, left as it is, otherwise);
    `retry_failed` sends its failed items again; `resend_changed` sends again the items whose
    input line changed since their result was recorded (refused otherwise); `grace_s` is how
    long a stop waits for the requests in flight."""

    restart: bool = False
    force: bool = False
    retry_failed: bool = False
    resend_changed: bool = False
    grace_s: float = DEFAULT_GRACE_S


@dataclass(frozen=True, kw_only=True)
class JobOptions:
    """A job of prompts: one request per input line, sent per `send`."""

    input: InputOptions
    output_path: str
    send: SendOptions = field(default_factory=SendOptions)
    flags: JobFlags = field(default_factory=JobFlags)

    def params(self, target: Target) -> dict[str, Any]:
        """What decides every answer: a resumed job must not change these (`--restart` does).

        The model as resolved, not as typed: `gpt-4o-mini` that meant the simulator must not
        resume against the real API once a key is set, and `sim:gpt-4o-mini` typed out is the
        same job as the default. What each line sends is known line by line (`jobs.store`).
        """
        return {
            "provider": target.provider,
            "model": target.model,
            "simulated": target.simulated,
            "max_tokens": self.send.max_tokens,
            "temperature": self.send.temperature,
            "stream": self.send.stream,
            "system": self.input.system,
        }

    def route(self, target: Target) -> dict[str, Any]:
        """Where the requests go and how the input is read: a rerun may change these (a
        server that moved, a fixed `--base-url`, another column), and its summary says so.
        Limits, retries and timeouts change nothing about a job and are not recorded."""
        # The price source is recorded too: a rerun priced otherwise says so in its summary.
        prices = None if self.send.queue else (self.send.prices or chain(None)).source
        return {"base_url": redact_url(target.base_url), "prices": prices, **self.input.route()}

    def read(
        self, path: str, warn: Callable[[str], None] | None = None
    ) -> Generator[InputItem, None, None]:
        return self.input.read(path, warn)


class JobSpec(Protocol):
    """What a `Job` needs of its options: its files, its flags, its items and its identity."""

    @property
    def input(self) -> InputOptions: ...

    @property
    def output_path(self) -> str: ...

    @property
    def flags(self) -> JobFlags: ...

    def params(self, target: Target) -> dict[str, Any]:
        """What decides every answer: a rerun that changes any of these is another job."""
        ...

    def route(self, target: Target) -> dict[str, Any]:
        """Where the requests go and how the input is read: a rerun may change these."""
        ...

    def read(
        self, path: str, warn: Callable[[str], None] | None = None
    ) -> Generator[InputItem, None, None]:
        """The items of the input at `path`; `warn` hears what the input has that is ignored."""
        ...
