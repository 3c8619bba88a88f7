"""The `llmgather` command line: one click group, one module per command."""

from __future__ import annotations

import logging

import click

from llmgather import __version__
from llmgather.cli.bench import bench_command
from llmgather.cli.cache import cache_group
from llmgather.cli.demo import demo_command
from llmgather.cli.run import run_command
from llmgather.cli.serve import serve_command
from llmgather.cli.sim import sim_command
from llmgather.cli.status import status_command
from llmgather.cli.worker import worker_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="llmgather")
def main() -> None:
    """Run many LLM API calls concurrently, at the provider's rate limit, losing nothing.

    With no API key in the environment, commands use the built-in simulator.
    """
    # The commands tell the user everything on their own console (the simulator banner, the
    # summary); the library's log lines, meant for programs that embed it, would repeat them.
    library_log = logging.getLogger("llmgather")
    if not library_log.handlers:
        library_log.addHandler(logging.NullHandler())
    library_log.propagate = False


for command in (
    run_command,
    worker_command,
    serve_command,
    demo_command,
    sim_command,
    status_command,
    bench_command,
    cache_group,
):
    main.add_command(command)
