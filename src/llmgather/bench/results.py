"""What every scenario shares: its contenders, its result rows, medians over repeats, the note
when a contender fails, and where the simulator's log goes."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmgather.bench._procs import ChildRun

Log = Callable[[str], None]
Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Contender:
    name: str
    module: str  # a module of llmgather.bench.contenders, or "cli" for `llmgather run`
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ScenarioResult:
    name: str
    rows: list[Row]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"scenario": self.name, "contenders": self.rows, **self.meta}


def pick(contenders: Sequence[Contender], only: set[str] | None) -> list[Contender]:
    return [c for c in contenders if only is None or c.name in only]


def failure_note(run: ChildRun, log: Log, name: str) -> str | None:
    if run.report is not None and run.returncode == 0:
        return None
    why = "timed out" if run.timed_out else f"exit code {run.returncode}"
    log(f"  ! {name}: {why}. {run.stderr_tail.strip().splitlines()[-1:] or ''}")
    return why


def median_rows(runs: list[list[Row]], key: Callable[[Row], Any]) -> list[Row]:
    """One row per key with the median of every numeric figure across repeats."""
    grouped: dict[Any, list[Row]] = {}
    for rows in runs:
        for row in rows:
            grouped.setdefault(key(row), []).append(row)
    merged = []
    for group in grouped.values():
        row = dict(group[0])
        for name, value in group[0].items():
            values = [r.get(name) for r in group]
            if (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and None not in values
            ):
                median = statistics.median(values)  # type: ignore[type-var]
                row[name] = round(median, 4) if isinstance(median, float) else median
        row["runs"] = len(group)
        merged.append(row)
    return merged


def sim_log_path(out: Path, scenario: str) -> Path:
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return logs / f"sim-{scenario}.log"
