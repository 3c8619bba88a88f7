"""`llmgather cache stats|clear`: what a response cache holds and how it has served, or
emptying it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from llmgather import _redis
from llmgather._errors import ConfigurationError, RedisUnavailableError
from llmgather.cache import CacheStore, open_store
from llmgather.cache.sqlite import DEFAULT_CACHE_NAME
from llmgather.cli._console import fail, print_json

T = TypeVar("T")

EXIT_USAGE = 2
_WHERE_HELP = (
    f"The cache: a file (default: {DEFAULT_CACHE_NAME} in the current folder, where `run "
    "--cache` puts it beside an output written here) or a redis:// URL."
)


@click.group("cache")
def cache_group() -> None:
    """The response cache of `run --cache`, `serve --cache` and `Client(cache=…)`."""


@cache_group.command("stats")
@click.argument("where", metavar="[PATH|URL]", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def stats_command(where: str | None, as_json: bool) -> None:
    """Entries, size, and the hits and misses of every run that used the cache."""
    stats = _with_store(where, lambda store: store.stats())
    if as_json:
        print_json(stats.to_dict())
        return
    lookups = stats.hits + stats.misses
    rate = f" ({stats.hits / lookups:.0%} of lookups)" if lookups else ""
    click.echo(
        f"cache    {stats.where}\n"
        f"entries  {stats.entries:,}\n"
        f"size     {stats.size_bytes / 1e6:,.2f} MB\n"
        f"hits     {stats.hits:,}{rate}\n"
        f"misses   {stats.misses:,}"
    )


@cache_group.command("clear")
@click.argument("where", metavar="[PATH|URL]", required=False)
def clear_command(where: str | None) -> None:
    """Remove every entry (and the counts): the next run sends every request again."""
    removed = _with_store(where, lambda store: store.clear())
    click.echo(f"removed {removed:,} entries from {where or DEFAULT_CACHE_NAME}")


def _with_store(where: str | None, action: Callable[[CacheStore], Awaitable[T]]) -> T:
    where = where or DEFAULT_CACHE_NAME
    # Reading a cache never makes one: a mistyped path says so instead.
    if not where.startswith(_redis.SCHEMES) and not os.path.isfile(where):
        fail(
            f"no cache at {where}: give the file `run --cache` wrote (beside the output's job "
            "store) or the redis:// URL it was given",
            EXIT_USAGE,
        )

    async def run() -> T:
        store = open_store(where)
        try:
            return await action(store)
        finally:
            await store.aclose()

    try:
        return asyncio.run(run())
    except (ConfigurationError, RedisUnavailableError) as error:
        fail(str(error), EXIT_USAGE)
