"""llmgather: run many LLM API calls concurrently, at the provider's rate limit, losing nothing."""

from llmgather._client import Client
from llmgather._config import Limits, Timeouts
from llmgather._engine import Engine, EngineStats
from llmgather._errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ContextLengthError,
    InvalidInputError,
    LLMGatherError,
    MalformedResponseError,
    NotFoundError,
    OverloadedError,
    PermanentError,
    PermissionDeniedError,
    QuotaExhaustedError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    TransientError,
    TruncatedStreamError,
)
from llmgather._retry import RetryPolicy
from llmgather._types import Completion, ErrorInfo, Request, Result, Usage
from llmgather.limits.local import Limiter

__version__ = "0.1.0"

__all__ = [
    "APIConnectionError",
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "Completion",
    "ConfigurationError",
    "ContextLengthError",
    "Engine",
    "EngineStats",
    "ErrorInfo",
    "InvalidInputError",
    "LLMGatherError",
    "Limiter",
    "Limits",
    "MalformedResponseError",
    "NotFoundError",
    "OverloadedError",
    "PermanentError",
    "PermissionDeniedError",
    "QuotaExhaustedError",
    "RateLimitError",
    "Request",
    "RequestTimeoutError",
    "Result",
    "RetryPolicy",
    "ServerError",
    "Timeouts",
    "TransientError",
    "TruncatedStreamError",
    "Usage",
    "__version__",
]
