"""The options of every command that sends: `run` and `worker` say the same things the same way
(see `llmgather._config` for the names and defaults)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from llmgather._config import DEFAULT_CONCURRENCY, DEFAULT_MAX_ATTEMPTS, DEFAULT_TIMEOUT_S

F = TypeVar("F", bound=Callable[..., object])

SENDING_OPTIONS = (
    click.option(
        "-m",
        "--model",
        help="provider:model (openai:gpt-4o-mini, gemini:…, anthropic:…, sim:…). Default: the simulator, or the provider whose key is set.",
    ),
    click.option(
        "--base-url",
        help="An OpenAI-compatible server (vLLM, llama-server, Ollama), or another endpoint for the provider.",
    ),
    click.option(
        "--api-key",
        help="API key (default: the provider's environment variable). Never printed or stored.",
    ),
    click.option(
        "-c",
        "--concurrency",
        type=click.IntRange(1, 10_000),
        default=DEFAULT_CONCURRENCY,
        show_default=True,
        help="Requests in flight at most (also the number of workers); with limits shared through Redis, on the key across every process that shares them.",
    ),
    click.option(
        "--rpm",
        type=click.FloatRange(min=0, min_open=True),
        help="Requests per minute to stay under.",
    ),
    click.option(
        "--rpd", type=click.FloatRange(min=0, min_open=True), help="Requests per day to stay under."
    ),
    click.option(
        "--tpm",
        type=click.FloatRange(min=0, min_open=True),
        help="Tokens per minute to stay under (prompt estimate + max tokens, settled with real usage).",
    ),
    click.option(
        "--itpm",
        type=click.FloatRange(min=0, min_open=True),
        help="Input tokens per minute to stay under (Anthropic counts input and output apart).",
    ),
    click.option(
        "--otpm",
        type=click.FloatRange(min=0, min_open=True),
        help="Output tokens per minute to stay under (reserved as max tokens, settled with real usage).",
    ),
    click.option(
        "--limiter",
        metavar="URL",
        help="Share the limits through Redis (redis://HOST:PORT/DB) with every process, on any machine, that names the same URL and key.",
    ),
    click.option(
        "--limiter-key",
        metavar="NAME",
        help="The shared budgets' name in Redis. Default: one per provider, model, endpoint and API key.",
    ),
    click.option(
        "--max-attempts",
        type=click.IntRange(1, 100),
        default=DEFAULT_MAX_ATTEMPTS,
        show_default=True,
        help="Attempts per item, first included.",
    ),
    click.option(
        "--max-retry-wait",
        type=click.FloatRange(min=0),
        default=300.0,
        show_default=True,
        help="Longest server-requested wait to honour; a longer one fails the item as an exhausted quota.",
    ),
    click.option(
        "--timeout",
        type=click.FloatRange(min=0, min_open=True),
        default=DEFAULT_TIMEOUT_S,
        show_default=True,
        help="Seconds a whole answer may take (with --stream: the longest silence between two chunks) before the request is abandoned and retried.",
    ),
    click.option(
        "--stream",
        is_flag=True,
        help="Stream each answer (records time to first token as ttft_ms).",
    ),
)


# The parameter name of each of SENDING_OPTIONS, in order.
SENDING_OPTION_NAMES = (
    "model",
    "base_url",
    "api_key",
    "concurrency",
    "rpm",
    "rpd",
    "tpm",
    "itpm",
    "otpm",
    "limiter",
    "limiter_key",
    "max_attempts",
    "max_retry_wait",
    "timeout",
    "stream",
)


def sending_options(command: F | None = None, *, omit: tuple[str, ...] = ()) -> Any:
    """Decorate `command` with SENDING_OPTIONS, in their order in --help, but those whose
    parameter names are in `omit`: `@sending_options` or `@sending_options(omit=(...))`."""

    def decorate(command: F) -> F:
        pairs = list(zip(SENDING_OPTION_NAMES, SENDING_OPTIONS, strict=True))
        for name, option in reversed(pairs):
            if name not in omit:
                command = option(command)
        return command

    return decorate if command is None else decorate(command)
