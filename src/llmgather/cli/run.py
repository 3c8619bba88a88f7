"""`llmgather run`: a file of prompts in, one result line per input out, resumable.

Exit codes: 0 every item ok; 1 finished, some items failed (see their error lines or
`llmgather status`); 2 a usage or configuration error, nothing sent; 3 `--strict` refused
invalid input lines, nothing sent; 4 stopped by an error after sending had begun (the disk,
the job store, an input changed under it): what was committed is kept, fix it and rerun the
same command to resume; 130 stopped by a signal (rerun the same command to resume).
An input with no items exits 0 with an empty output, and makes no job store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sqlite3
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click
from click.core import ParameterSource

from llmgather._config import Limits, Timeouts
from llmgather._errors import (
    ChangedItemsError,
    ConfigurationError,
    InputChangedError,
    InvalidInputError,
    JobBusyError,
    JobError,
    JobMismatchError,
    OutputExistsError,
    RedisUnavailableError,
    StrictInputError,
)
from llmgather._prompt import MAX_TEMPERATURE
from llmgather._retry import RetryPolicy
from llmgather.cache.open import cache_setting
from llmgather.cli._console import fail, print_json, simulator_banner, stderr, warning
from llmgather.cli._options import (
    BUDGET_FLAGS,
    FiniteFloat,
    cache_option,
    prices_option,
    sending_options,
)
from llmgather.cli._progress import Progress, describe_limits
from llmgather.cli.dry_run import dry_run as estimate_run
from llmgather.jobs.job import Job
from llmgather.jobs.options import InputOptions, JobFlags, JobOptions, SendOptions
from llmgather.jobs.store import store_path_for
from llmgather.jobs.summary import CLI_TERMS, JobSummary, next_steps
from llmgather.limits.tokens import DEFAULT_OUTPUT_ESTIMATE
from llmgather.pricing import chain

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
EXIT_STRICT = 3
EXIT_HALTED = 4
EXIT_INTERRUPTED = 130


@click.command("run")
@click.argument("input_path", metavar="INPUT")
@click.option(
    "-o",
    "--output",
    "output_path",
    help="Result JSONL, one line per input (a job store is kept beside it). Required but with --dry-run.",
)
@sending_options
@click.option(
    "--max-tokens",
    type=click.IntRange(min=1),
    help="Output tokens per request (a line's own max_tokens wins).",
)
@click.option(
    "--temperature",
    type=FiniteFloat(0, MAX_TEMPERATURE),
    help="Sampling temperature (a line's own wins).",
)
@click.option("--system", help="A system prompt for every line that has none.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv", "txt"]),
    help="Input format (default: by extension; - is JSONL).",
)
@click.option("--column", help="CSV: the column holding the prompt.")
@click.option("--id-column", help="CSV: the column holding the id.")
@click.option(
    "--max-line-bytes",
    type=click.IntRange(min=1),
    default=1_048_576,
    show_default=True,
    help="Longest input line accepted; longer lines are recorded as invalid.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Refuse the whole file if any line is invalid (default: record such lines as failed items).",
)
@click.option(
    "--restart", is_flag=True, help="Discard the existing job beside OUTPUT and start over."
)
@click.option(
    "--force",
    is_flag=True,
    help="Overwrite OUTPUT even if no job store beside it says it is this job's (by default such a file is refused, left as it is).",
)
@click.option(
    "--retry-failed", is_flag=True, help="Send the items that failed in earlier runs again."
)
@click.option(
    "--resend-changed",
    is_flag=True,
    help="Send again the items whose input line changed since their result was recorded (a rerun that changed any is refused otherwise, before sending anything).",
)
@click.option(
    "--grace",
    "grace_s",
    type=FiniteFloat(min=0),
    default=30.0,
    show_default=True,
    help="Seconds the first Ctrl-C gives requests in flight to finish.",
)
@click.option(
    "--queue",
    metavar="URL",
    help="Send nothing here: enqueue the items in Redis (redis://HOST:PORT/DB) for `llmgather worker`s, on any machines, and collect their results.",
)
@click.option(
    "--queue-name",
    default="default",
    show_default=True,
    help="The queue in that Redis (the workers name the same one).",
)
@prices_option
@cache_option("a SQLite file beside OUTPUT")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Send nothing: read and check the whole input and print items, invalid lines, tokens, the cost range and the time the limits allow.",
)
@click.option(
    "--expect-output-tokens",
    type=click.IntRange(min=0),
    metavar="N",
    help="--dry-run: output tokens an answer is expected to have (default: the average of the finished items of the job store beside -o, else the simulator's, else unknown).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary object at the end.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def run_command(
    input_path: str,
    output_path: str | None,
    model: str | None,
    base_url: str | None,
    api_key: str | None,
    limits: Limits,
    limiter: str | None,
    limiter_key: str | None,
    max_attempts: int,
    max_retry_wait: float,
    timeout: float,
    stream: bool,
    max_tokens: int | None,
    temperature: float | None,
    system: str | None,
    fmt: str | None,
    column: str | None,
    id_column: str | None,
    max_line_bytes: int,
    strict: bool,
    restart: bool,
    force: bool,
    retry_failed: bool,
    resend_changed: bool,
    grace_s: float,
    queue: str | None,
    queue_name: str,
    prices_path: str | None,
    cache_values: tuple[str, ...],
    dry_run: bool,
    expect_output_tokens: int | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Send every prompt of INPUT and write one result line per input to OUTPUT.

    INPUT is JSONL ({"prompt": …} or {"messages": […]}, optional id, metadata, model,
    max_tokens, temperature; or OpenAI Batch API lines), CSV with --column, a .txt file with
    one prompt per line, or - for standard input. Rerun the same command to resume.
    """
    if output_path is None and not dry_run:
        raise click.MissingParameter(param_hint="'-o' / '--output'", param_type="option")
    if queue and not dry_run:
        _refuse_sending_options_given()
    if limits.max_cost is not None and max_tokens is None:
        # A reservation bounds an answer only where max_tokens does (see `pricing.reserve`).
        warning(
            f"--max-cost without --max-tokens: a line that sets no max_tokens reserves "
            f"{DEFAULT_OUTPUT_ESTIMATE} output tokens, which its answer may pass; give "
            "--max-tokens so that each reservation bounds what its answer can cost"
        )
    try:
        prices = None if prices_path is None else chain(prices_path)
    except ConfigurationError as error:
        fail(f"--prices: {error}", EXIT_USAGE)
    try:
        cache = cache_setting(cache_values)
    except ConfigurationError as error:
        fail(str(error), EXIT_USAGE)
    job_options = JobOptions(
        input=InputOptions(
            path=input_path,
            fmt=fmt,
            column=column,
            id_column=id_column,
            system=system,
            max_line_bytes=max_line_bytes,
            strict=strict,
        ),
        output_path=output_path or "",
        send=SendOptions(
            model=model,
            base_url=base_url,
            api_key=api_key,
            limits=limits,
            retry=RetryPolicy(max_attempts=max_attempts, max_retry_wait=max_retry_wait),
            timeouts=Timeouts(read=timeout),
            max_tokens=max_tokens,
            temperature=temperature,
            stream=stream,
            limiter=limiter,
            limiter_key=limiter_key,
            queue=queue,
            queue_name=queue_name,
            prices=prices,
            cache=cache,
        ),
        flags=JobFlags(
            restart=restart,
            force=force,
            retry_failed=retry_failed,
            resend_changed=resend_changed,
            grace_s=grace_s,
        ),
    )
    if dry_run:  # the estimate alone: nothing sent, no file written (`cli.dry_run`)
        code = estimate_run(
            job_options, expect_output_tokens=expect_output_tokens, as_json=as_json, env=os.environ
        )
        raise SystemExit(code)
    progress = Progress(stderr, enabled=not quiet and not as_json)

    def started(stats: Callable[..., Any], pending: int, simulated: bool) -> None:
        if simulated:
            simulator_banner("on 127.0.0.1")
        progress.start(stats, pending, simulated)

    # The provider keys and proxy variables are read here, at the edge, and nowhere deeper.
    job = Job(job_options, on_start=started, on_warning=warning, env=os.environ)
    try:
        summary = asyncio.run(_run_with_signals(job, progress, as_json=as_json))
    except StrictInputError as error:
        fail(
            f"--strict: {error.reason}\nFix these lines, or run without --strict to record them "
            "as failed items.",
            EXIT_STRICT,
        )
    except InputChangedError as error:
        _fail_for(
            job,
            f"{error.reason}: rerun the same command to go on with the input as it is now "
            "(only what is pending, new or fixed is sent; lines that have a result and "
            "changed are sent again only with --resend-changed).",
            as_json=as_json,
            rerun=False,
        )
    except OutputExistsError as error:
        fail(f"{error.reason} Give -o another file, or pass --force to overwrite it.", EXIT_USAGE)
    except JobMismatchError as error:
        _fail_for(
            job,
            f"{error.reason} These decide every answer: rerun with --restart to discard the "
            "old results, or use a different -o.",
            as_json=as_json,
        )
    except ChangedItemsError as error:
        _fail_for(
            job,
            f"{error.reason} To send them again (their new results replace the old), rerun "
            "with --resend-changed; to keep the recorded results, undo the edit; --restart "
            "starts the whole job over.",
            as_json=as_json,
        )
    except JobBusyError as error:
        _fail_for(
            job,
            f"{error.reason}; wait for it to finish or stop it, or use a different -o",
            as_json=as_json,
        )
    except (ConfigurationError, InvalidInputError, JobError, RedisUnavailableError) as error:
        _fail_for(job, str(error), as_json=as_json)
    except OSError as error:
        shown = f"{error.strerror or error}: {error.filename or ''}".rstrip(": ")
        _fail_for(job, shown, as_json=as_json)
    except sqlite3.Error as error:
        store = store_path_for(job_options.output_path)
        _fail_for(job, f"the job store {store} cannot be used: {error}", as_json=as_json)
    finally:
        progress.close()
    summary = _in_cli_terms(summary)
    _report(summary, as_json=as_json)
    if summary.quota_spent and summary.pending:
        raise SystemExit(EXIT_HALTED)  # stopped by the provider's answer; a rerun resumes
    if summary.interrupted:
        raise SystemExit(EXIT_INTERRUPTED)
    incomplete = summary.failed or summary.invalid or summary.pending or summary.unsent
    raise SystemExit(EXIT_SOME_FAILED if incomplete else EXIT_OK)


# What the workers of a queue decide: given to `run --queue`, each is refused by its flag.
WORKERS_OPTIONS = (
    "model",
    "base_url",
    "api_key",
    "api_key_file",
    "concurrency",
    *BUDGET_FLAGS,
    "limiter",
    "limiter_key",
    "max_attempts",
    "max_retry_wait",
    "timeout",
    "stream",
)


def _refuse_sending_options_given() -> None:
    """With --queue the workers send: every sending option given is refused by its flag, not
    silently ignored."""
    context = click.get_current_context()
    given = [
        f"--{name.replace('_', '-')}"
        for name in WORKERS_OPTIONS
        if context.get_parameter_source(name) is not ParameterSource.DEFAULT
    ]
    if given:
        fail(
            f"with --queue the workers send the requests: give {', '.join(given)} to "
            "`llmgather worker`, not to run",
            EXIT_USAGE,
        )


def _in_cli_terms(summary: JobSummary) -> JobSummary:
    """The summary with its hint in the command's words."""
    return dataclasses.replace(
        summary,
        hint=next_steps(
            summary.pending,
            summary.failed,
            summary.invalid,
            terms=CLI_TERMS,
            quota_spent=summary.quota_spent,
            unsent=summary.unsent,
        ),
    )


def _fail_for(job: Job, message: str, *, as_json: bool, rerun: bool = True) -> NoReturn:
    """Exit 2 if nothing was sent yet. Once sending has begun exit 4, with the summary of
    what was done under --json (its `error` the message), and say (`rerun`) that the work is
    kept for a rerun of the same command."""
    if not job.sending:
        fail(message, EXIT_USAGE)
    if as_json:
        _print_ended(job, error=message)
    if rerun:
        message += (
            "\nStopped. Every result committed so far is kept: fix this and rerun the same "
            "command to resume."
        )
    fail(message, EXIT_HALTED)


def _print_ended(job: Job, *, error: str | None = None) -> None:
    """The --json summary of a run that ends short of its own end (an error, a second
    Ctrl-C): counts as its store holds them, for scripts to read on every way out."""
    summary = job.end_now()
    data = (
        _in_cli_terms(summary).to_dict()
        if summary is not None
        else {"output": job.options.output_path, "interrupted": True}
    )
    if error is not None:
        data["error"] = error
    print_json(data)
    sys.stdout.flush()


async def _run_with_signals(job: Job, progress: Progress, *, as_json: bool) -> JobSummary:
    """First SIGINT/SIGTERM: stop feeding and finish what is in flight. Second: exit at once,
    the run marked interrupted in the store (and its summary printed under --json)."""
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if job.stop.is_set():
            # Everything finished so far is committed; the job resumes from the store. The
            # terminal is left as found: the progress line ends and the cursor shows again.
            progress.close()
            if as_json:
                _print_ended(job)
            else:
                job.end_now()  # the store's running time counts to now
            stderr.print(
                "Quit at once: every result committed so far is kept. "
                "Rerun the same command to resume.",
                highlight=False,
            )
            sys.stderr.flush()
            os._exit(EXIT_INTERRUPTED)
        job.stop.set()
        stderr.print(
            f"\nStopping: no new requests; waiting up to {job.options.flags.grace_s:.0f}s for those in "
            "flight. Press Ctrl-C again to quit at once. Rerun the same command to resume."
        )

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        return await job.run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _spent(summary: JobSummary) -> str:
    unpriced = f" ({summary.unpriced:,} unpriced)" if summary.unpriced else ""
    if summary.max_cost is not None and summary.spent_usd is not None:
        cap = f"{summary.max_cost:,.6f}".rstrip("0")
        cap = cap + "0" * (2 - len(cap.partition(".")[2]))  # $25.00, $0.0005
        return f"${summary.spent_usd:,.6f} spent of the ${cap} cap{unpriced}"
    return f"${summary.cost_usd:,.6f} spent{unpriced}"


def _report(summary: JobSummary, *, as_json: bool) -> None:
    if summary.total == 0:
        stderr.print(f"{summary.input} holds no items: nothing to send", markup=False)
    for name, yours in summary.overruled_limits.items():
        # Said once, beside the JSON too: the run was slower than the user asked for.
        announced = summary.learned_limits[name]
        stderr.print(
            f"the server announces {describe_limits({name: announced})}, below your "
            f"--{name} {yours:.0f}: paced at {announced:.0f}",
            highlight=False,
            markup=False,
        )
    if as_json:
        print_json(summary.to_dict())
        return
    if summary.total == 0:
        return
    for change in summary.changes:
        stderr.print(f"since the last run: {change}", highlight=False, markup=False)
    state = (
        "stopped, the quota spent"
        if summary.quota_spent and summary.pending
        else "interrupted"
        if summary.interrupted
        else ("resumed and finished" if summary.resumed else "finished")
    )
    stderr.print(
        f"{state}: {summary.ok} ok"
        + (f" ({summary.cached} from the cache)" if summary.cached else "")
        + f", {summary.failed} failed"
        + (f", {summary.unsent} unsent (the cost cap)" if summary.unsent else "")
        + (f", {summary.invalid} invalid input lines" if summary.invalid else "")
        + (f", {summary.pending} pending" if summary.pending else "")
        + f" of {summary.total} → {summary.output}  "
        f"[{summary.elapsed_s:.1f}s, {summary.retries} retries, {summary.http_429} × 429, "
        + (f"{summary.resent} resent, " if summary.resent else "")
        + f"{_spent(summary)}, {summary.input_tokens + summary.output_tokens:,} tokens]",
        highlight=False,
        markup=False,
    )
    if summary.learned_from == "429s":
        options = " ".join(
            f"--{name} {limit:.0f}" for name, limit in summary.learned_limits.items()
        )
        stderr.print(
            "the provider announced no limit; its 429s taught a pace of "
            f"{describe_limits(summary.learned_limits)}: pass {options} to start there next time",
            highlight=False,
            markup=False,
        )
    elif summary.learned_limits:
        stderr.print(
            f"paced by the limits the provider announced: {describe_limits(summary.learned_limits)}",
            highlight=False,
            markup=False,
        )
    for error in summary.top_errors[:3]:
        stderr.print(
            f"  {error['count']} × {error['type']}: {error['message']}",
            highlight=False,
            markup=False,
        )
    if summary.hint:
        stderr.print(summary.hint, highlight=False, markup=False)
