"""`llmgather worker --queue URL`: send the items of `run --queue` jobs, from any machine.

A worker reads tasks from the queue's Redis stream, sends them through its own link (its
model, its key, its limits), writes each result back and only then acknowledges the task. By
default the workers share their limits through the same Redis (`--limiter`), so any number of
them stay under one key's limits together.

Exit codes: 0 stopped (Ctrl-C, SIGTERM, or --idle-exit with nothing left to do); 2 a usage or
configuration error, or a Redis that does not answer at the start; 4 Redis lost for good
while working (what was finished is in the queue; unfinished tasks go to another worker).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from contextlib import AsyncExitStack
from typing import Any

import click

from llmgather._config import Limits, Timeouts
from llmgather._errors import ConfigurationError, RedisUnavailableError
from llmgather._link import link_options, open_link
from llmgather._redact import redact_url
from llmgather._retry import RetryPolicy
from llmgather.cli._console import fail, simulator_banner, stderr
from llmgather.cli._options import FiniteFloat, prices_option, read_prices, sending_options
from llmgather.jobs.queue import DEFAULT_RECLAIM_AFTER_S, QueueWorker, WorkerCounts
from llmgather.jobs.senders import LinkSender
from llmgather.providers.registry import resolve_target

EXIT_USAGE = 2
EXIT_HALTED = 4
EXIT_INTERRUPTED = 130


@click.command("worker")
@click.option(
    "--queue", metavar="URL", required=True, help="The queue's Redis: redis://HOST:PORT/DB."
)
@click.option("--queue-name", default="default", show_default=True, help="The queue in that Redis.")
@sending_options
@click.option(
    "--local-limits",
    is_flag=True,
    help="Keep this worker's limits to itself (default: shared through the queue's Redis, or --limiter).",
)
@click.option(
    "--reclaim-after",
    type=FiniteFloat(min=1),
    default=DEFAULT_RECLAIM_AFTER_S,
    show_default=True,
    help="Seconds a task may sit with a worker that stopped renewing it (one that died) before another takes it.",
)
@click.option(
    "--idle-exit",
    type=FiniteFloat(min=0),
    help="Exit after this many seconds with nothing to do (default: wait for work until stopped).",
)
@click.option("--consumer", help="This worker's name in the queue (default: HOST-PID).")
@prices_option
def worker_command(
    queue: str,
    queue_name: str,
    local_limits: bool,
    reclaim_after: float,
    idle_exit: float | None,
    consumer: str | None,
    max_attempts: int,
    max_retry_wait: float,
    timeout: float,
    **options: Any,
) -> None:
    """Send the items of `llmgather run --queue` jobs and write their results back."""
    options["prices"] = read_prices(options.pop("prices_path"), EXIT_USAGE)
    phase = _Phase()
    try:
        counts = asyncio.run(
            _work(
                phase,
                queue,
                queue_name,
                local_limits=local_limits,
                reclaim_after=reclaim_after,
                idle_exit=idle_exit,
                consumer=consumer,
                retry=RetryPolicy(max_attempts=max_attempts, max_retry_wait=max_retry_wait),
                timeouts=Timeouts(read=timeout),
                options=options,
            )
        )
    except ConfigurationError as error:
        fail(str(error), EXIT_USAGE)
    except RedisUnavailableError as error:
        if not phase.working:
            fail(str(error), EXIT_USAGE)
        fail(
            f"{error}\nStopped. Every result written so far is in the queue; the tasks this "
            "worker held go to another worker.",
            EXIT_HALTED,
        )
    stderr.print(
        f"worker stopped: {counts.done} ok, {counts.failed} failed, "
        f"{counts.reclaimed} taken over from other workers",
        markup=False,
    )


class _Phase:
    working = False  # True once tasks may have been taken: a lost Redis is then exit 4


async def _work(
    phase: _Phase,
    queue: str,
    queue_name: str,
    *,
    local_limits: bool,
    reclaim_after: float,
    idle_exit: float | None,
    consumer: str | None,
    retry: RetryPolicy,
    timeouts: Timeouts,
    options: dict[str, Any],
) -> WorkerCounts:
    """Open the link and the queue, then take and send tasks until stopped; the counts."""
    limits: Limits = options["limits"]
    async with AsyncExitStack() as stack:
        shared_url = None if local_limits else (options["limiter"] or queue)
        sender = await _open_sender(stack, shared_url, retry, timeouts, options)
        worker = QueueWorker(
            queue,
            sender,
            name=queue_name,
            consumer=consumer,
            capacity=limits.concurrency * 2,
            reclaim_after=reclaim_after,
            idle_exit=idle_exit,
        )
        stack.push_async_callback(worker.aclose)
        await worker.check()
        async with sender:
            _announce(worker, sender, queue, queue_name, shared_url)
            _stop_on_signals(worker)
            phase.working = True
            return await worker.run()


async def _open_sender(
    stack: AsyncExitStack,
    shared_url: str | None,
    retry: RetryPolicy,
    timeouts: Timeouts,
    options: dict[str, Any],
) -> LinkSender:
    """The worker's sender: its own link to the model, with limits kept by this worker
    (`shared_url` None) or shared through that Redis; closed with `stack`."""
    limits: Limits = options["limits"]
    target = resolve_target(
        options["model"], base_url=options["base_url"], api_key=options["api_key"],
        env=os.environ,
    )  # fmt: skip
    link_settings = link_options(
        target,
        os.environ,
        api_key=options["api_key"],
        base_url=options["base_url"],
        workers=limits.concurrency,
        retry=retry,
        timeouts=timeouts,
        stream=options["stream"],
        prices=options["prices"],  # the worker prices what it sends: the job's lines' cost
    )
    link = await open_link(
        stack,
        target,
        limits,
        link_settings,
        limiter_url=shared_url,
        limiter_key=options["limiter_key"],
    )
    return LinkSender(link)


def _announce(
    worker: QueueWorker,
    sender: LinkSender,
    queue: str,
    queue_name: str,
    shared_url: str | None,
) -> None:
    """Say on stderr which queue the worker reads, where it sends, and who keeps its limits."""
    if sender.simulated:
        simulator_banner("on 127.0.0.1, one for this worker")
    where = (
        "kept by this worker" if shared_url is None else f"shared through {redact_url(shared_url)}"
    )
    stderr.print(
        f"worker {worker.consumer}: queue {queue_name!r} at {redact_url(queue)}, sending "
        f"to {sender.describe()}, limits {where}",
        markup=False,
    )


def _stop_on_signals(worker: QueueWorker) -> None:
    """First SIGINT/SIGTERM: take no new task, finish those in flight. Second: exit at once
    (the tasks held go to another worker after --reclaim-after)."""
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if worker.stop.is_set():
            sys.stderr.write("Quit at once: the tasks this worker held go to another worker.\n")
            sys.stderr.flush()
            os._exit(EXIT_INTERRUPTED)
        worker.stop.set()
        stderr.print("\nStopping: no new tasks; finishing those in flight. Ctrl-C again quits.")

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
