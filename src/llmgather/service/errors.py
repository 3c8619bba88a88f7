"""What a client of the gateway is told when its request fails: the status and message in
its own dialect, never the upstream's key. The service's own cost budget spent
(`serve --max-cost`) is a 402: neither the upstream's fault nor one to retry.

An upstream's refusal of llmgather's key is not the client's fault (502, naming the upstream
key as refused); the upstream's rate limits are the gateway's to absorb (a 503, should retries
run out, never a 429); a request the upstream found invalid stays a 400 (or 404, 413, 422).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from llmgather._errors import (
    APIError,
    AuthenticationError,
    BudgetExhaustedError,
    OverloadedError,
    PermissionDeniedError,
    QuotaExhaustedError,
    RateLimitError,
    RequestTimeoutError,
)
from llmgather._redact import Redactor
from llmgather._types import ErrorInfo, Result

logger = logging.getLogger("llmgather.service")

_CLIENT_STATUSES = frozenset({400, 404, 409, 413, 415, 422})


class InvalidParam(Exception):
    """A field of a body, or a query or form parameter, missing or of the wrong type: a 422
    that names it."""


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    status: int
    message: str
    retry_after: float | None = None


def error_answer_for(error: BaseException) -> ErrorAnswer:
    if not isinstance(error, APIError):
        # A fault of the gateway's own (an llmgather error is an APIError): the log says what.
        logger.error("llmgather serve: a request failed in the gateway", exc_info=error)
        return ErrorAnswer(500, "the gateway failed to handle the request (see its log)")
    if isinstance(error, BudgetExhaustedError):
        # The service's own budget, not the upstream's: not a 429 nor a 5xx, which clients
        # retry; nothing more will be sent until its operator gives it a higher one.
        return ErrorAnswer(
            402,
            f"the service's cost budget is spent (${error.spent} of ${error.cap}): nothing more "
            "is sent upstream; its operator may restart it with a higher --max-cost",
        )
    if isinstance(error, (AuthenticationError, PermissionDeniedError)):
        status = f" (HTTP {error.status_code})" if error.status_code else ""
        return ErrorAnswer(
            502,
            f"the upstream refused the API key llmgather serve was given{status}; the "
            "service's operator must fix its key (the service asks the upstream again now and "
            "then, and serves again by itself once the key is accepted)",
        )
    if isinstance(error, (RateLimitError, QuotaExhaustedError, OverloadedError)) or (
        error.status_code == 503
    ):
        return ErrorAnswer(
            503, f"the upstream is out of capacity: {error.message}", error.retry_after
        )
    if isinstance(error, RequestTimeoutError):
        return ErrorAnswer(504, f"the upstream did not answer in time: {error.message}")
    if error.status_code in _CLIENT_STATUSES:
        return ErrorAnswer(error.status_code, error.message)
    return ErrorAnswer(502, f"the upstream failed: {error}")


def for_clients(result: Result, redactor: Redactor) -> Result:
    """A job's result as the service's clients read it, as the gateway would answer it: an
    upstream's refusal of the service's key worded as `error_answer_for` words it (never the
    upstream's text, which may quote part of the key), and no secret the service knows in the
    answer (an upstream may echo the request's key)."""
    if result.ok:
        text = redactor.known(result.text) if result.text else result.text
        return result if text == result.text else dataclasses.replace(result, text=text)
    error, exception = result.error, result.exception
    if error is None or not isinstance(exception, (AuthenticationError, PermissionDeniedError)):
        return result
    shown = ErrorInfo(error.type, error_answer_for(exception).message, error.status_code)
    return dataclasses.replace(result, error=shown)
