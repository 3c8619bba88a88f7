"""llmgather's vendor-neutral exception tree; retryability is a property of the class.

    LLMGatherError
    ├── InvalidInputError            bad input line or argument (never sent)
    │   ├── DuplicateIdError         several input lines share one id
    │   ├── StrictInputError         `--strict` refused a file with invalid lines
    │   └── InputChangedError        the input changed while its job ran
    ├── ConfigurationError           unknown provider, missing key, bad option
    ├── RedisUnavailableError        a shared limiter's or work queue's Redis does not answer
    ├── JobError                     a job that cannot start or resume as asked
    │   ├── JobMismatchError         the output belongs to a job with other answer parameters
    │   ├── ChangedItemsError        a rerun's input changed items that have results
    │   ├── JobBusyError             another live process is running the job
    │   └── OutputExistsError        the output is a file no job store claims (left as it is)
    └── APIError                     anything a provider call can end with
        ├── TransientError           retried with backoff (retryable = True)
        │   ├── RateLimitError       429 rate limit (retry_after honoured, limiter paused)
        │   ├── RequestTimeoutError  408, or no answer within the read timeout
        │   ├── ServerError          500, 502, 503, 504 and other 5xx
        │   ├── OverloadedError      529 / Anthropic overloaded_error
        │   ├── APIConnectionError   reset or closed after the request was written, mid-body
        │   │   └── ConnectError     no connection made (refused, DNS, TLS): nothing was sent
        │   ├── MalformedResponseError  a body or stream event that does not parse
        │   └── TruncatedStreamError    a stream that ended before its terminal event
        └── PermanentError           reported per item, never retried (retryable = False)
            ├── BadRequestError      400, 422
            ├── AuthenticationError  401
            ├── PermissionDeniedError 403
            ├── NotFoundError        404
            ├── ContextLengthError   prompt longer than the model's context
            ├── QuotaExhaustedError  insufficient_quota, a daily quota, a wait past the ceiling
            └── BudgetExhaustedError your own cost cap (`--max-cost`) can take no more: not sent

Provider adapters map HTTP statuses and error bodies into these classes at one boundary
(`providers/*.py`); each transport maps its own I/O failures (sockets, TLS, proxies, timeouts)
to `APIConnectionError`, `ConnectError` and `RequestTimeoutError` (`transport/http11/`,
`transport/aiohttp.py`); the official SDKs' exceptions, raised in a user's own calls, are
mapped in `_sdk_errors.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal


class LLMGatherError(Exception):
    """Base of every error llmgather raises on purpose."""


class InvalidInputError(LLMGatherError):
    """An input line or argument that cannot become a request; it names where and why."""


class DuplicateIdError(InvalidInputError):
    """Two or more input lines share an id; `examples` maps up to 10 ids to their lines."""

    def __init__(self, examples: list[tuple[str, list[int]]], ids: int, lines: int) -> None:
        self.examples = examples
        self.ids = ids
        self.lines = lines
        shown = "; ".join(
            f"{id!r} on lines {', '.join(map(str, ls))}{numbered_line_note(id, ls)}"
            for id, ls in examples
        )
        more = f" (the first {len(examples)} shown)" if ids > len(examples) else ""
        super().__init__(
            f"{ids} id{'s' if ids != 1 else ''} used by more than one input line "
            f"({lines} lines in all): {shown}{more}. Every line needs its own id so results can be "
            f"matched and resumed; fix the ids ({ONE_ID_EACH}) and rerun."
        )


# What to do about ids used twice, wherever they are refused.
ONE_ID_EACH = (
    "give every line an id of its own, or give none: each line is then known by its number"
)


def numbered_line_note(id: str, lines: list[int]) -> str:
    """When one of the `lines` that share `id` is the line whose number it is, that a line
    without an id is known by its number (so the line that shows no id is explained); else ""."""
    numbered = next((line for line in lines if str(line) == id), None)
    if numbered is None:
        return ""
    return f" ({id} is line {numbered}'s number, the id of a line that gives none)"


class StrictInputError(InvalidInputError):
    """A strict job refused a file with invalid lines; nothing was sent. `reason` says which
    lines (up to 20 of `count`), without what to do: the CLI says that with its own flags."""

    def __init__(self, count: int, errors: list[str]) -> None:
        self.count = count
        more = f"\n  … and {count - len(errors)} more" if count > len(errors) else ""
        self.reason = (
            f"{count} invalid input line(s), nothing was sent:\n  " + "\n  ".join(errors) + more
        )
        super().__init__(
            f"strict: {self.reason}\nFix these lines, or set strict=False to record them as "
            "failed items."
        )


class InputChangedError(InvalidInputError):
    """The input file changed while the job ran: what is pending in the store is not in it."""

    def __init__(self, input_path: str, detail: str) -> None:
        # What is wrong, without what to do: the CLI says that with its own flags.
        self.reason = f"{input_path}: {detail}. Every result committed so far is kept"
        super().__init__(
            f"{self.reason}: run the job again to go on with the input as it is now (only "
            "what is pending, new or fixed is sent; pass resend_changed=True to send lines "
            "that have a result and changed again)."
        )


class ConfigurationError(LLMGatherError):
    """A provider, model string or option that llmgather cannot work with."""


class RedisUnavailableError(LLMGatherError):
    """The Redis of a shared limiter or a work queue does not answer (after a few retries):
    nothing is sent unaccounted, and nothing already done is lost."""


class JobError(LLMGatherError):
    """A job (`llmgather run`) that cannot start or resume as asked; this run sent nothing."""


class JobMismatchError(JobError):
    """The output already belongs to a job with other inputs or parameters."""

    def __init__(self, output: str, changes: list[str]) -> None:
        self.changes = changes
        # What is wrong, without what to do: the CLI says that with its own flags.
        self.reason = (
            f"{output} belongs to an earlier job that differs from this one: {'; '.join(changes)}."
        )
        super().__init__(
            f"{self.reason} Start over with restart=True to discard the old results, or write "
            "to another output path."
        )


class ChangedItemsError(JobError):
    """A rerun's input changed what is sent for items that have results already: nothing was
    sent, and the job is as it was. `examples`: (id, line) of the first few."""

    def __init__(self, source: str, count: int, examples: list[tuple[str, int]]) -> None:
        self.count = count
        self.examples = examples
        shown = ", ".join(f"{id!r} (line {line})" for id, line in examples)
        more = f", and {count - len(examples)} more" if count > len(examples) else ""
        # What is wrong, without what to do: the CLI says that with its own flags.
        self.reason = (
            f"{count} item{'s' if count != 1 else ''} of {source} changed since "
            f"{'their results were' if count != 1 else 'its result was'} recorded: "
            f"{shown}{more}. Nothing was sent."
        )
        super().__init__(
            f"{self.reason} Pass resend_changed=True to send them again (their new results "
            "replace the old), or undo the edit to keep the recorded results."
        )


class JobBusyError(JobError):
    """Another live process is running this job; `reason` says which, without what to do."""

    def __init__(self, pid: object, host: object) -> None:
        self.reason = f"another llmgather process (pid {pid} on {host}) is running this job"
        super().__init__(
            f"{self.reason}; wait for it to finish or stop it, or write to another output path"
        )


class OutputExistsError(JobError):
    """The output path holds a file with no job store beside it: not a job's output to resume
    or replace, so it is left as it is. `restart=True` replaces it."""

    def __init__(self, output: str, size: int, store: str) -> None:
        self.output = output
        # What is wrong, without what to do: the CLI says that with its own flags.
        self.reason = (
            f"{output} already exists ({size:,} bytes) and is not the output of a job that "
            f"could resume (no job store {store} beside it): it was left as it is and nothing "
            "was sent."
        )
        super().__init__(
            f"{self.reason} Write to another path, or start over with restart=True to replace it."
        )


class APIError(LLMGatherError):
    """A provider call failed. `retry_after` is the server's hint in seconds, if it gave one;
    `announced` the limits its headers announced, by budget name (as on `Completion`)."""

    retryable: bool = False
    announced: Mapping[str, float] | None = None

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.retry_after = retry_after

    def __str__(self) -> str:
        prefix = f"HTTP {self.status_code}: " if self.status_code else ""
        return f"{prefix}{self.message}"


class TransientError(APIError):
    retryable = True


class RateLimitError(TransientError):
    pass


class RequestTimeoutError(TransientError):
    pass


class ServerError(TransientError):
    pass


class OverloadedError(TransientError):
    pass


class APIConnectionError(TransientError):
    """The connection failed after the request was written: it may have reached the server
    (and be billed), so retrying it spends an attempt."""


class ConnectError(APIConnectionError):
    """No connection could be made (refused, unknown host, TLS handshake): the request never
    left. Several items meeting it in a row is an outage, which spends no attempts."""


class MalformedResponseError(TransientError):
    pass


class TruncatedStreamError(TransientError):
    pass


class PermanentError(APIError):
    retryable = False


class BadRequestError(PermanentError):
    pass


class AuthenticationError(PermanentError):
    pass


class PermissionDeniedError(PermanentError):
    pass


class NotFoundError(PermanentError):
    pass


class ContextLengthError(PermanentError):
    pass


class QuotaExhaustedError(PermanentError):
    pass


class BudgetExhaustedError(PermanentError):
    """The cost cap (`--max-cost`, `max_cost=`) cannot take the next request's worst-case cost
    and no reservation outstanding could free room: it is not sent, nor is anything after it.

    Not a 429 and never retried: the limiter raises it instead of waiting. `spent` and `cap`
    are in USD (`spent` counts what is reserved for answers not yet settled too). An item it
    stops is an error line of type `budget_exhausted` (`line_type`), as an invalid input line
    is one of `invalid_input`: not sent, neither failed nor done.
    """

    line_type = "budget_exhausted"

    def __init__(self, *, spent: int, cap: int, needed: int, scale: int) -> None:
        self.spent = Decimal(spent) / scale
        self.cap = Decimal(cap) / scale
        self.needed = Decimal(needed) / scale
        super().__init__(
            f"not sent: the cost cap is spent (${_usd(self.spent)} of ${_usd(self.cap)} spent"
            f" or reserved; this request may cost up to ${_usd(self.needed)});"
            " HINT: rerun with a higher --max-cost (max_cost=) to send it"
        )


def _usd(amount: Decimal) -> str:
    return f"{amount:.6f}".rstrip("0").rstrip(".") if amount else "0"


def error_for_status(status: int) -> type[APIError]:
    """The default class for an HTTP status when the body says nothing more specific."""
    if status == 429:
        return RateLimitError
    if status == 408:
        return RequestTimeoutError
    if status == 529:
        return OverloadedError
    if status >= 500:
        return ServerError
    return _PERMANENT_BY_STATUS.get(status, BadRequestError)


_PERMANENT_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    413: BadRequestError,
    422: BadRequestError,
}
