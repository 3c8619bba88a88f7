"""What every command prints the same way: the simulator banner, errors, JSON summaries."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import click
import orjson
from rich.console import Console
from rich.markup import escape


def new_console(*, stderr: bool = False, highlight: bool = False) -> Console:
    """A Console as every command makes one: `:name:` stays text, never an emoji (rich's
    default turns `sim:gemini:gemini-2.0-flash` into `sim♊gemini-2.0-flash`, and a model's
    name, a file's or a server's message may hold such a pair)."""
    return Console(stderr=stderr, highlight=highlight, emoji=False)


stderr = new_console(stderr=True)
# Off a terminal (a log file, a pipe, CI) a line stays one line: wrapping at a guessed width
# only breaks grep and copy-paste.
stderr.soft_wrap = not stderr.is_terminal


def simulator_banner(where: str) -> None:
    stderr.print(
        f"[bold yellow]Simulator:[/] no API key is set, so requests go to llmgather's built-in "
        f"simulator ({where}). Set OPENAI_API_KEY, GEMINI_API_KEY or ANTHROPIC_API_KEY, or "
        "pass --model/--base-url, to call a real API."
    )


def warning(message: str) -> None:
    """A warning about the input or the options: the run goes on."""
    stderr.print(f"[bold yellow]warning:[/] {escape(message)}")


def fail(message: str, code: int) -> NoReturn:
    """Print an error (never a traceback) and exit with `code`."""
    stderr.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    sys.exit(code)


def print_json(data: Any) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS).decode())
