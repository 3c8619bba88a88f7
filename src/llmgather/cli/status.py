"""`llmgather status OUTPUT`: what a job has done so far, read from its store beside the output."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3

import click
import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

from llmgather.cli._console import new_console
from llmgather.jobs.store import JobStats, SQLiteJobStore, store_path_for
from llmgather.jobs.summary import shown_error

__all__ = ["render_stats", "status_command"]


@click.command("status")
@click.argument("output", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def status_command(output: str, as_json: bool) -> None:
    """Show the progress of the job whose results go to OUTPUT: counts, throughput, tokens, errors."""
    path = store_path_for(output)
    if not os.path.exists(path):
        raise click.ClickException(f"no llmgather job found for {output} (expected {path})")
    try:
        with SQLiteJobStore.open(path, create=False) as store:
            stats = store.stats()
    except sqlite3.Error as error:
        raise click.ClickException(
            f"{path} is not a usable llmgather job store ({error}); "
            f"rerun the job with --restart to start it afresh"
        ) from None
    if as_json:
        data = {
            "output": output,
            "store": path,
            **stats.to_dict(),
            "started_at": _iso(stats.started_at),
            "top_errors": [
                {"type": t, "message": shown_error(m), "count": c} for t, m, c in stats.top_errors
            ],
        }
        click.echo(orjson.dumps(data).decode())
    else:
        render_stats(stats, output, new_console(highlight=True))


def render_stats(stats: JobStats, output: str, console: Console) -> None:
    """The human-readable status: a summary table and the most common errors."""
    # The path on a line of its own, never wrapped: a table title would break it mid-name at
    # its width, and a path is copied whole. Text: a `[` or `:x:` in a file name is kept as is.
    console.print(Text(f"llmgather job → {output}", style="italic"), soft_wrap=True)
    table = Table(show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    finished = stats.done + stats.failed + stats.invalid
    percent = f" ({finished / stats.total:.1%})" if stats.total else ""
    rows = [
        ("state", stats.state),
        ("items", f"{stats.total:,}"),
        ("done", f"{stats.done:,}"),
        ("failed", f"{stats.failed:,}"),
        ("invalid", f"{stats.invalid:,}"),
        ("pending", f"{stats.pending:,}"),
        # Left by a spent --max-cost: a rerun with a higher one sends them.
        *([("unsent (cost cap)", f"{stats.unsent:,}")] if stats.unsent else []),
        ("finished", f"{finished:,}{percent}"),
        ("started", _iso(stats.started_at) or "not yet"),
        ("running time", _duration(stats.elapsed_s)),
        ("throughput", f"{stats.throughput_per_min:,.1f} items/min"),
        ("tokens", f"{stats.input_tokens:,} in, {stats.output_tokens:,} out"),
        (
            "spent",
            f"${stats.cost_usd:,.6f}"
            + (f" ({stats.unpriced:,} unpriced)" if stats.unpriced else ""),
        ),
        ("projected", _projected(stats)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    if stats.top_errors:
        errors = Table(title="most common errors", title_justify="left")
        errors.add_column("count", justify="right")
        errors.add_column("type")
        errors.add_column("message")
        for type_, message, count in stats.top_errors:
            errors.add_row(f"{count:,}", type_, shown_error(message))
        console.print(errors)


def _projected(stats: JobStats) -> str:
    """The job's projected total, saying what is still to answer in it."""
    cost = stats.projected_usd
    if cost is None:
        return "- (no answer priced yet)"
    left = [f"{stats.pending:,} pending"] if stats.pending else []
    left += [f"{stats.unsent:,} unsent"] if stats.unsent else []
    return f"${cost:,.6f}" + (f" (with {', '.join(left)})" if left else "")


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="seconds")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
