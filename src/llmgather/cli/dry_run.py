"""`llmgather run INPUT --dry-run`: the estimate of a run, with nothing sent.

The whole input is read and validated as a run reads it (streamed), the target is resolved
as a run resolves it, and nothing else happens: no request, no simulator started, no job
store made or written (one beside `-o` is only read, to leave out what a rerun keeps), no
output file. Exit 0 with the estimate; 2 for a usage error (a bad model, an input
that cannot be read); 3 under `--strict` when a line is invalid, as the run would refuse.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from decimal import Decimal

from llmgather._errors import ConfigurationError, InvalidInputError
from llmgather.cli._console import fail, new_console, print_json, warning
from llmgather.estimate import (
    CapCheck,
    Estimate,
    estimate_items,
    expectation_for,
    open_finished_job,
)
from llmgather.jobs.options import JobOptions
from llmgather.pricing import Pricer, chain
from llmgather.providers.registry import Target, resolve_target

__all__ = ["dry_run"]

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_STRICT = 3


def dry_run(
    options: JobOptions,
    *,
    expect_output_tokens: int | None,
    as_json: bool,
    env: Mapping[str, str],
) -> int:
    """Print the estimate of `options`' run; the exit code."""
    send = options.send
    if send.queue is not None:
        fail(
            "--dry-run with --queue: the workers choose the model; give --model (without "
            "--queue) to estimate a run",
            EXIT_USAGE,
        )
    try:
        target = resolve_target(send.model, base_url=send.base_url, api_key=send.api_key, env=env)
    except ConfigurationError as error:
        fail(str(error), EXIT_USAGE)
    # `--restart` discards the job beside -o: its results then count for nothing.
    finished = (
        open_finished_job(options.output_path, retry_failed=options.flags.retry_failed)
        if options.output_path and not options.flags.restart
        else None
    )
    with finished if finished is not None else nullcontext():
        expectation = expectation_for(
            expect_output_tokens,
            finished,
            simulated=target.simulated,
            default_max_tokens=target.spec.default_max_tokens,
        )
        pricer = Pricer(send.prices or chain(None), target.provider, target.model, warn=warning)
        try:
            estimate = estimate_items(
                options.input.read(options.input.path, warning),
                provider=target.provider,
                model=target.model,
                simulated=target.simulated,
                pricer=pricer,
                expectation=expectation,
                limits=send.limits,
                max_tokens=send.max_tokens,
                finished=finished,
            )
        except InvalidInputError as error:
            fail(str(error), EXIT_USAGE)
        except OSError as error:
            fail(f"{error.strerror or error}: {error.filename or ''}".rstrip(": "), EXIT_USAGE)
    if as_json:
        print_json({"dry_run": True, "target": target.describe(), **estimate.to_dict()})
    else:
        _render(estimate, target)
    if options.input.strict and estimate.invalid:
        fail(
            f"--strict: {estimate.invalid} invalid input lines; the run would refuse the "
            "whole file. Fix them, or run without --strict to record them as failed items.",
            EXIT_STRICT,
        )
    return EXIT_OK


def _render(estimate: Estimate, target: Target) -> None:
    console = new_console()

    def say(text: str) -> None:
        console.print(text, highlight=False, markup=False, soft_wrap=True)

    say(f"Dry run, nothing sent: {target.describe()}")
    invalid = (
        f" (+ {estimate.invalid:,} invalid input line{'s' if estimate.invalid > 1 else ''},"
        " which a run records as failed items)"
        if estimate.invalid
        else ""
    )
    rerun = estimate.rerun
    if rerun is not None:
        spent = "" if rerun.spent is None else f", {_usd(rerun.spent)} spent"
        say(
            f"job store      {rerun.kept:,} of {rerun.whole.items:,} items done{spent}: "
            "a rerun keeps them, so the figures below leave them out"
        )
    say(f"items          {estimate.items:,}{' to send' if rerun is not None else ''}{invalid}")
    for line in estimate.invalid_lines:
        say(f"  {line}")
    if estimate.invalid > len(estimate.invalid_lines):
        say(f"  … and {estimate.invalid - len(estimate.invalid_lines):,} more")
    how = (
        "no item to count"
        if not estimate.counted_by
        else f"counted with {', '.join(estimate.counted_by)}"
        if estimate.exact
        else "approximated, about 4 characters a token: " + "; ".join(estimate.approximate_because)
    )
    say(f"input tokens   {estimate.input_tokens:,} ({how})")
    expected = (
        "unknown" if estimate.output_expected is None else f"{estimate.output_expected:,} expected"
    )
    worst = (
        f"{estimate.output_worst:,} at most ({estimate.worst_from})"
        if estimate.output_worst is not None
        else f"no bound: {estimate.unbounded:,} items set no max_tokens (pass --max-tokens)"
    )
    say(f"output tokens  {expected} ({estimate.expected_from}); {worst}")
    say(f"cost (USD)     {_cost_range(estimate)}  [{estimate.prices}]")
    if estimate.cap is not None:
        say(f"cost cap       {_cap(estimate.cap)}")
    if rerun is not None:
        say(f"whole job      {rerun.whole.items:,} items: {_cost_range(rerun.whole)}")
    say(f"time           {_time(estimate)}")


def _cost_range(estimate: Estimate) -> str:
    if estimate.cost_input is None:
        return (
            f"unknown: no price for {', '.join(estimate.unpriced)} (give them with --prices FILE)"
        )
    low = (
        f"{_usd(estimate.cost_expected)} with the expected output"
        if estimate.cost_expected is not None
        else f"{_usd(estimate.cost_input)} for the input alone"
    )
    high = (
        f"{_usd(estimate.cost_worst)} worst case"
        if estimate.cost_worst is not None
        else "no worst case (no max_tokens)"
    )
    return f"{_usd(estimate.cost_input)} input; {low} … {high}"


def _cap(cap: CapCheck) -> str:
    """Whether `--max-cost` covers the estimate, expected and at worst, and what it leaves."""
    spent = f" ({_usd(cap.spent)} spent, {_usd(cap.left)} left)" if cap.spent else ""
    the_cap = f"the cap ${cap.max_cost}{spent}"

    def unsent(count: int | None) -> str:
        return f"about {count:,} item{'s' if count != 1 else ''} would be left unsent"

    if cap.covers_worst:
        return f"{the_cap} covers the worst case"
    if cap.covers_expected and cap.covers_worst is None:
        return f"{the_cap} covers the expected cost; the worst case is unknown"
    if cap.covers_expected:
        return (
            f"{the_cap} covers the expected cost but not the worst case: {unsent(cap.unsent_worst)}"
        )
    if cap.covers_expected is False and cap.covers_worst is False:
        return (
            f"{the_cap} covers neither the expected cost nor the worst case: "
            f"{unsent(cap.unsent_expected)} ({cap.unsent_worst:,} at worst)"
        )
    if cap.covers_expected is False:
        return f"{the_cap} does not cover the expected cost: {unsent(cap.unsent_expected)}"
    if cap.covers_worst is False:
        return f"{the_cap} does not cover the worst case: {unsent(cap.unsent_worst)}"
    return f"{the_cap}: not checked, the cost is unknown"


def _time(estimate: Estimate) -> str:
    if estimate.bound_by is None:
        return (
            "no limit given (--rpm, --tpm, --itpm, --otpm, --rpd): as fast as the provider answers"
        )
    expected, worst = estimate.time_expected_s, estimate.time_worst_s
    if expected == worst or (worst is None and expected is not None):
        shown = _duration(expected) + ("" if worst is not None else " expected; no worst case")
    elif expected is None:
        shown = f"{_duration(worst)} worst case"
    else:
        shown = f"{_duration(expected)} expected, {_duration(worst)} worst case"
    return f"at least {shown}, set by --{estimate.bound_by}"


def _usd(value: Decimal | None) -> str:
    return "?" if value is None else f"${value:,.6f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
