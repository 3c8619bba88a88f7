"""The options of every command that sends: `run`, `worker` and `serve` say the same things the
same way (see `llmgather._config` for the names and defaults); the limits reach the command as
one `Limits`."""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from llmgather._config import DEFAULT_CONCURRENCY, DEFAULT_MAX_ATTEMPTS, DEFAULT_TIMEOUT_S, Limits
from llmgather._errors import ConfigurationError
from llmgather.cache.open import DEFAULT as DEFAULT_CACHE
from llmgather.cli._console import fail
from llmgather.pricing import Prices, chain
from llmgather.providers.registry import unsendable

F = TypeVar("F", bound=Callable[..., object])


class FiniteFloat(click.FloatRange):
    """The type of every number option: a FloatRange that also refuses NaN and infinity.

    click's FloatRange lets NaN through (every comparison with it is false), which reached a
    request as `"temperature": null` and a limiter as a crash; no option of llmgather means
    either, so both are refused with the range the option takes."""

    name = "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            what = "not a number" if math.isnan(number) else "not a finite number"
            self.fail(f"{value!r} is {what}: give one with {self._describe_range()}", param, ctx)
        return super().convert(number, param, ctx)


def secret_file(param: str, flag: str, what: str, *, envvar: str | None = None) -> Any:
    """Add `FLAG-file PATH` beside the option `flag` (parameter `param`): the secret read from
    a file, or from standard input with `-`, so that it never shows on a command line, where
    `ps` shows it to every local user. The command still receives it as `param`, stripped of
    the newline around it; a secret with a line break inside is refused (exit 2), naming where
    it came from and never quoting it."""
    file_flag = f"{flag}-file"
    file_param = f"{param}_file"

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def with_secret(*args: Any, **kwargs: Any) -> Any:
            path = kwargs.pop(file_param)
            given = kwargs.get(param)
            source = click.get_current_context().get_parameter_source(param)
            if path is not None:
                if given and source is ParameterSource.COMMANDLINE:
                    raise click.UsageError(f"give {flag} or {file_flag}, not both")
                if path == "-" and kwargs.get("input_path") == "-":
                    raise click.UsageError(
                        f"standard input cannot hold both INPUT and {what}: give {file_flag} "
                        "a file, or INPUT a path"
                    )
                kwargs[param] = _read_secret(path, file_flag, what)
            elif given:
                where = envvar if source is ParameterSource.ENVIRONMENT and envvar else flag
                kwargs[param] = _checked(given.strip(), f"{what} given with {where}", where)
            return command(*args, **kwargs)

        option = click.option(
            file_flag,
            file_param,
            metavar="PATH",
            help=f"Read {what} from PATH (- for standard input) rather than {flag}: it then "
            "stays out of `ps` and the shell's history.",
        )
        return option(with_secret)  # type: ignore[return-value]

    return decorate


def _read_secret(path: str, flag: str, what: str) -> str:
    shown = "standard input" if path == "-" else path
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise click.BadParameter(f"cannot read {shown}: {reason}", param_hint=flag) from None
    value = text.strip()
    if not value:
        raise click.BadParameter(f"{shown} is empty: it should hold {what}", param_hint=flag)
    return _checked(value, f"{what} in {shown}", flag)


def _checked(value: str, where: str, flag: str) -> str:
    problem = unsendable(value)
    if problem is not None:
        raise click.BadParameter(
            f"{where} contains {problem}, which no HTTP header can carry: "
            "give it alone, on one line",
            param_hint=flag,
        )
    return value


# The flag of each budget of `Limits` (each kind of `limits.budgets.KINDS`), by name, with its
# help: a new kind of limit is one entry here.
BUDGET_FLAGS = {
    "rpm": "Requests per minute to stay under.",
    "rpd": "Requests per day to stay under.",
    "tpm": "Tokens per minute to stay under (prompt estimate + max tokens, settled with real usage).",
    "itpm": "Input tokens per minute to stay under (Anthropic counts input and output apart).",
    "otpm": "Output tokens per minute to stay under (reserved as max tokens, settled with real usage).",
    "max_cost": "A hard budget in USD for the whole job, over its reruns: each request reserves its worst case (prompt and max tokens, priced), settled to its real cost; once nothing more fits, the rest is left unsent (exit 1) for a rerun with a higher --max-cost. With --limiter, shared by every process on the key.",
}


def limit_options(command: F) -> F:
    """Add `-c/--concurrency` and a flag per budget (`BUDGET_FLAGS`), handed to `command` as
    one `limits: Limits`, built here and carried whole from here on."""

    @functools.wraps(command)
    def with_limits(*args: Any, **kwargs: Any) -> Any:
        budgets = {name: kwargs.pop(name) for name in BUDGET_FLAGS}
        kwargs["limits"] = Limits(concurrency=kwargs.pop("concurrency"), **budgets)
        return command(*args, **kwargs)

    decorated: Any = with_limits
    for name, text in reversed(BUDGET_FLAGS.items()):
        positive = FiniteFloat(min=0, min_open=True)
        flag = f"--{name.replace('_', '-')}"
        decorated = click.option(flag, type=positive, help=text)(decorated)
    return click.option(
        "-c",
        "--concurrency",
        type=click.IntRange(1, 10_000),
        default=DEFAULT_CONCURRENCY,
        show_default=True,
        help="Requests in flight at most (also the number of workers); with limits shared through Redis, on the key across every process that shares them.",
    )(decorated)


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
    lambda command: click.option(
        "--api-key",
        help="API key (default: the provider's environment variable). Never printed or stored. "
        "On a command line every local user sees it (ps): prefer the variable or --api-key-file.",
    )(secret_file("api_key", "--api-key", "the API key")(command)),
    limit_options,
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
        type=FiniteFloat(min=0),
        default=300.0,
        show_default=True,
        help="Longest server-requested wait to honour; a longer one fails the item as an exhausted quota.",
    ),
    click.option(
        "--timeout",
        type=FiniteFloat(min=0, min_open=True),
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
    "limits",
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


# `--prices FILE` on worker and serve (and as run spells it): the user's prices over the table.
def cache_option(where: str) -> Callable[[F], F]:
    """`--cache [PATH|URL|always]`, repeatable; `where` says where it lives when given alone."""
    return click.option(
        "--cache",
        "cache_values",
        multiple=True,
        is_flag=False,
        flag_value=DEFAULT_CACHE,
        metavar="[PATH|URL|always]",
        help="Answer requests seen before from a response cache (no request, no cost): alone, "
        f"{where}; a PATH (--cache=PATH), or a redis:// URL to share it. Requests with a "
        "temperature above 0 (or none) are sent anyway unless `--cache always` (combine: "
        "--cache always --cache=PATH).",
    )


prices_option = click.option(
    "--prices",
    "prices_path",
    type=click.Path(dir_okay=False),
    help='Your own prices, over genai-prices\' table: a JSON file of {"model": {"input": 0.15,'
    ' "output": 0.6}} in USD per million tokens (also cache_read, cache_write).',
)


def read_prices(path: str | None, exit_code: int = 2) -> Prices | None:
    """The prices `--prices FILE` gives (None: genai-prices' table alone); a file that cannot
    be read or is malformed exits at once, naming the flag, the model and the field."""
    if path is None:
        return None
    try:
        return chain(path)
    except ConfigurationError as error:
        fail(f"--prices: {error}", exit_code)
