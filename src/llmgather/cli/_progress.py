"""The live progress line of `run`: done, failed, in flight, pace, ETA, retries and 429s,
spent and projected cost."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from decimal import Decimal

from rich.console import Console
from rich.live import Live
from rich.text import Text

from llmgather._config import Limits
from llmgather._engine import EngineStats
from llmgather.limits.budgets import KINDS
from llmgather.pricing.projection import projected_cost

REFRESH_S = 0.25
# A per-minute budget is a bucket that lets `burst_seconds` of its limit (at least one
# request) out at once, then refills evenly. Over the first seconds, finished / elapsed counts
# that burst as pace and shows more than the limit (707 req/min under 600 at 3 s): the rate is
# taken over the elapsed time plus the bucket's span, which the limit can never exceed.
BURST_S = Limits().burst_seconds


class Progress:
    """Redraws from `engine.statistics()` a few times a second; silent when not on a terminal."""

    def __init__(self, console: Console, *, enabled: bool) -> None:
        self._console = console
        self._enabled = enabled and console.is_terminal
        self._stats: Callable[[], EngineStats] | None = None
        self._total = 0
        self._task: asyncio.Task[None] | None = None
        self._live: Live | None = None

    def start(self, stats: Callable[[], EngineStats], total: int, simulated: bool) -> None:
        if not self._enabled:
            return
        self._stats, self._total = stats, total
        self._live = Live(
            self._render(), console=self._console, auto_refresh=False, transient=False
        )
        self._live.start()
        self._task = asyncio.get_running_loop().create_task(self._redraw())

    async def _redraw(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            assert self._live is not None
            self._live.update(self._render(), refresh=True)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._live is not None:
            self._live.update(self._render(), refresh=True)
            self._live.stop()
            self._live = None

    def _render(self) -> Text:
        if self._stats is None:
            return Text("")
        s = self._stats()
        finished = s.done + s.failed + s.unsent
        rpm_limit = s.limits.get("rpm")
        head_start = max(BURST_S, 60 / rpm_limit if rpm_limit else 0.0)
        minutes = (s.elapsed_s + head_start) / 60
        rpm = finished / minutes
        tpm = (s.input_tokens + s.output_tokens) / minutes
        left = max(0, self._total - finished)
        eta = f"{left / (rpm / 60):.0f}s" if rpm > 0 and left else "-"
        width = 24
        filled = int(width * finished / self._total) if self._total else width
        bar = "█" * filled + "░" * (width - filled)
        line = Text()
        line.append(f"{bar} {finished}/{self._total} ")
        line.append(f"ok {s.done} ", style="green")
        line.append(f"failed {s.failed} ", style="red" if s.failed else "")
        if s.unsent:  # left by the cost cap, for a rerun with a higher one
            line.append(f"unsent {s.unsent} ", style="yellow")
        line.append(f"in flight {s.in_flight} ")
        line.append(f"| {rpm:,.0f} req/min {tpm:,.0f} tok/min | ETA {eta} ")
        line.append(
            f"| retries {s.retries} 429s {s.http_429}", style="yellow" if s.http_429 else ""
        )
        line.append(f" | {_spent(s.cost_usd, s.priced, left)}")
        if s.learned:
            line.append(f" | learned {describe_limits(s.learned)}", style="cyan")
        return line


def _spent(cost: Decimal, priced: int, left: int) -> str:
    """What the run spent so far, and its projected total (`projected_cost`)."""
    projected = projected_cost(cost, priced, left)
    return f"{_money(cost)} spent, projected " + ("-" if projected is None else _money(projected))


def _money(cost: Decimal) -> str:
    # Cents once there are dollars; below a dollar, a bulk job of cheap answers still shows.
    return f"${cost:,.2f}" if cost >= 1 else f"${cost:.6f}"


_UNITS = {kind.name: kind.short for kind in KINDS}


def describe_limits(limits: Mapping[str, float]) -> str:
    """`{"rpm": 500, "tpm": 200000}` as "500 req/min, 200,000 tok/min"."""
    return ", ".join(f"{value:,.0f} {_UNITS.get(name, name)}" for name, value in limits.items())
