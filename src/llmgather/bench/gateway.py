"""The `gateway` scenario: `llmgather serve` against the LiteLLM proxy and a direct call.

Against a `llmgather sim` subprocess at 0 ms latency, from this process (raw aiohttp, one
pooled session), each gateway a subprocess of its own, started with its default settings:

    latency   N sequential requests (concurrency 1): p50 and p99, and what the gateway adds to
              the direct call's
    rate      requests/s at concurrency 64 and 256 over a fixed duration, and × direct's
    shared    200 `AsyncOpenAI(max_retries=0)` clients sharing an upstream limit (sim --rpm),
              each gateway told that limit the way it supports: the 429s the clients see, and
              % of the ceiling (ok requests over the run, a run shorter than the limit allows
              charged as that long, as in the `ceiling` scenario)
    acceptance  our own check, ours only: 2,000 requests from 200 clients through the
              gateway to `sim --rpm 6000`: all ok, no 429, ≥ 95 % of the ceiling

The direct call is always measured: it is the baseline of the added latency and the ratios.
Beside the gateways runs a reference, the bare relay on uvicorn (`_bare_relay`): what uvicorn and
one upstream call cost with nothing on top, the floor of any gateway built on uvicorn.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llmgather.bench import _load
from llmgather.bench._bare_relay import NAME as BARE
from llmgather.bench._bare_relay import bare_relay
from llmgather.bench._config import BenchConfig
from llmgather.bench._litellm import NAME as LITELLM
from llmgather.bench._litellm import litellm_proxy
from llmgather.bench._procs import SimProcess
from llmgather.bench._servers import GatewayUnavailable, ServerProcess, ours
from llmgather.bench.results import Log, Row, ScenarioResult, median_rows, sim_log_path

DIRECT = "direct (no gateway)"
OURS = "llmgather serve"
# The bare relay is a reference, not a contender: the cost of uvicorn and one upstream call alone.
GATEWAYS: dict[str, Callable[..., ServerProcess]] = {
    OURS: ours,
    BARE: bare_relay,
    LITELLM: litellm_proxy,
}
CONCURRENCIES = (64, 256)

# What the gateway is held to (BENCHMARKS.md records each run against them).
MAX_ADDED_P50_MS = 1.0
MIN_RATIO_TO_DIRECT = 0.5  # at concurrency 64
MIN_RATIO_TO_LITELLM = 10.0  # at concurrency 64
MIN_ACCEPTANCE_PCT = 95.0


@dataclass(frozen=True, kw_only=True, slots=True)
class GatewaySizes:
    latency_requests: int
    latency_warmup: int
    rate_s: float  # per concurrency
    rate_warmup_s: float
    shared_clients: int
    shared_rpm: float
    shared_requests: int
    acceptance_rpm: float
    acceptance_requests: int

    def ceiling_s(self, requests: int, rpm: float) -> float:
        return 60.0 * requests / rpm


FULL = GatewaySizes(
    latency_requests=500,
    latency_warmup=50,
    rate_s=8.0,
    rate_warmup_s=1.0,
    shared_clients=200,
    shared_rpm=600.0,
    shared_requests=250,  # 25 s at 600 RPM
    acceptance_rpm=6000.0,
    acceptance_requests=2000,  # 20 s at 6,000 RPM
)
QUICK = GatewaySizes(
    latency_requests=150,
    latency_warmup=20,
    rate_s=3.0,
    rate_warmup_s=0.5,
    shared_clients=200,
    shared_rpm=1200.0,
    shared_requests=200,  # 10 s at 1,200 RPM
    acceptance_rpm=6000.0,
    acceptance_requests=500,  # 5 s at 6,000 RPM
)


def pct_of_ceiling(ok: int, requests: int, elapsed_s: float, ceiling_s: float) -> float:
    """ok requests per second as a % of what the limit allows; a run that ends sooner than the
    limit allows (by failing requests) is charged that long, so failing fast is not speed."""
    if requests == 0:
        return 0.0
    return 100.0 * (ok / requests) * ceiling_s / max(elapsed_s, ceiling_s)


def run_gateway(
    config: BenchConfig,
    out: Path,
    log: Log,
    only: set[str] | None = None,
    sizes: GatewaySizes | None = None,
) -> ScenarioResult:
    sizes = sizes or (QUICK if config.quick else FULL)
    work = out / "work" / "gateway"
    work.mkdir(parents=True, exist_ok=True)
    names = [name for name in GATEWAYS if only is None or name in only]
    unavailable: dict[str, str] = {}
    runs: list[list[Row]] = [[] for _ in range(config.repeat)]
    with SimProcess(latency_ms=0, log=sim_log_path(out, "gateway")) as sim:
        upstream = sim.base_url + "/v1"
        for rows in runs:
            rows.append(_measure(DIRECT, upstream, sizes, log))
        for name in names:
            try:
                with GATEWAYS[name](upstream, work) as gateway:
                    for rows in runs:
                        rows.append(_measure(name, gateway.base_url, sizes, log))
            except GatewayUnavailable as why:
                unavailable[name] = str(why)
                log(f"  ! {name}: {why}")
    rows = median_rows(runs, key=lambda r: r["name"])
    rows += [{"name": name, "error": why} for name, why in unavailable.items()]
    _relate(rows)
    for row in rows:
        if row["name"] not in unavailable:
            row.update(_shared(row["name"], sizes, out, work, log))
    acceptance = None
    if OURS in names and OURS not in unavailable:
        acceptance = _acceptance(sizes, out, work, log)
    meta = {
        "sizes": asdict(sizes),
        "latency_ms": 0,
        "concurrencies": list(CONCURRENCIES),
        "acceptance": acceptance,
        "targets": targets(rows, acceptance),
        "floor_ratio_c64": next((r.get("ratio_c64") for r in rows if r["name"] == BARE), None),
    }
    return ScenarioResult("gateway", rows, meta)


def _measure(name: str, base_url: str, sizes: GatewaySizes, log: Log) -> Row:
    async def figures() -> tuple[_load.Latency, list[_load.Rate]]:
        latency = await _load.latency(base_url, sizes.latency_requests, sizes.latency_warmup)
        rates = [
            await _load.rate(base_url, c, sizes.rate_s, sizes.rate_warmup_s) for c in CONCURRENCIES
        ]
        return latency, rates

    latency, rates = asyncio.run(figures())
    row: Row = {
        "name": name,
        "p50_ms": round(latency.p50_ms, 3),
        "p99_ms": round(latency.p99_ms, 3),
        "failed": latency.failed + sum(r.failed for r in rates),
    }
    for r in rates:
        row[f"rps_c{r.concurrency}"] = round(r.rps, 1)
    log(
        f"  gateway {name}: p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms, "
        + ", ".join(f"{r.rps:,.0f} req/s at c={r.concurrency}" for r in rates)
        + (f", {row['failed']} failed" if row["failed"] else "")
    )
    return row


def _relate(rows: list[Row]) -> None:
    """Added latency and ratios against the direct call's, in place."""
    direct = next(r for r in rows if r["name"] == DIRECT)
    for row in rows:
        if "p50_ms" not in row:
            continue
        row["added_p50_ms"] = round(row["p50_ms"] - direct["p50_ms"], 3)
        row["added_p99_ms"] = round(row["p99_ms"] - direct["p99_ms"], 3)
        for c in CONCURRENCIES:
            base = direct.get(f"rps_c{c}") or 0.0
            row[f"ratio_c{c}"] = round(row[f"rps_c{c}"] / base, 3) if base else None


def _shared(name: str, sizes: GatewaySizes, out: Path, work: Path, log: Log) -> Row:
    """The shared-limit run for one contender, on a fresh simulator (full buckets)."""
    tally, upstream_429 = _through(
        name,
        rpm=sizes.shared_rpm,
        clients=sizes.shared_clients,
        requests=sizes.shared_requests,
        out=out,
        work=work,
    )
    ceiling_s = sizes.ceiling_s(sizes.shared_requests, sizes.shared_rpm)
    pct = pct_of_ceiling(tally.ok, tally.requests, tally.elapsed_s, ceiling_s)
    log(
        f"  gateway {name}, {sizes.shared_clients} clients at {sizes.shared_rpm:,.0f} RPM: "
        f"{tally.ok} ok, {tally.http_429} × 429 to clients, {tally.failed} failed, "
        f"{tally.elapsed_s:.1f}s, {pct:.1f}% of ceiling"
    )
    return {
        "shared_ok": tally.ok,
        "shared_429": tally.http_429,
        "shared_failed": tally.failed,
        "shared_upstream_429": upstream_429,
        "shared_wall_s": round(tally.elapsed_s, 2),
        "shared_pct_of_ceiling": round(pct, 1),
    }


def _acceptance(sizes: GatewaySizes, out: Path, work: Path, log: Log) -> dict[str, Any]:
    tally, upstream_429 = _through(
        OURS,
        rpm=sizes.acceptance_rpm,
        clients=sizes.shared_clients,
        requests=sizes.acceptance_requests,
        out=out,
        work=work,
    )
    ceiling_s = sizes.ceiling_s(sizes.acceptance_requests, sizes.acceptance_rpm)
    pct = pct_of_ceiling(tally.ok, tally.requests, tally.elapsed_s, ceiling_s)
    result = {
        **tally.to_dict(),
        "clients": sizes.shared_clients,
        "rpm": sizes.acceptance_rpm,
        "ceiling_s": ceiling_s,
        "upstream_429": upstream_429,
        "pct_of_ceiling": round(pct, 1),
    }
    log(
        f"  acceptance: {tally.ok:,}/{tally.requests:,} ok, {tally.http_429} × 429, "
        f"{tally.elapsed_s:.1f}s for a {ceiling_s:.0f}s ceiling: {pct:.1f}%"
    )
    return result


def _through(
    name: str, *, rpm: float, clients: int, requests: int, out: Path, work: Path
) -> tuple[_load.SharedTally, int]:
    """`clients` SDK clients through `name` (told `rpm`) to a simulator limited to `rpm`: what
    the clients saw, and the 429s the simulator answered."""
    deadline_s = 2.0 * 60.0 * requests / rpm + 30.0
    with SimProcess(latency_ms=0, rpm=rpm, log=sim_log_path(out, "gateway")) as sim:
        upstream = sim.base_url + "/v1"
        if name == DIRECT:
            tally = asyncio.run(_load.shared_limit(upstream, clients, requests, deadline_s))
        else:
            with GATEWAYS[name](upstream, work, rpm=rpm) as gateway:
                tally = asyncio.run(
                    _load.shared_limit(gateway.base_url, clients, requests, deadline_s)
                )
        by_status = sim.stats().get("by_status", {})
    return tally, int(by_status.get("429", 0))


def targets(rows: list[Row], acceptance: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The gateway's targets, each with the measured value and whether it is met."""
    by_name = {r["name"]: r for r in rows}
    mine, theirs = by_name.get(OURS, {}), by_name.get(LITELLM, {})
    found: list[dict[str, Any]] = []

    def check(what: str, value: Any, target: str, meets: bool) -> None:
        found.append({"what": what, "value": value, "target": target, "meets": meets})

    if mine.get("added_p50_ms") is not None:
        added = mine["added_p50_ms"]
        check("added p50 at c=1, ms", added, f"≤ {MAX_ADDED_P50_MS}", added <= MAX_ADDED_P50_MS)
    if mine.get("ratio_c64") is not None:
        ratio = mine["ratio_c64"]
        check(
            "req/s at c=64, × direct",
            ratio,
            f"≥ {MIN_RATIO_TO_DIRECT}",
            ratio >= MIN_RATIO_TO_DIRECT,
        )
    if mine.get("rps_c64") and theirs.get("rps_c64"):
        ratio = round(mine["rps_c64"] / theirs["rps_c64"], 1)
        check(
            "req/s at c=64, × LiteLLM proxy",
            ratio,
            f"≥ {MIN_RATIO_TO_LITELLM:.0f}",
            ratio >= MIN_RATIO_TO_LITELLM,
        )
    if acceptance is not None:
        meets = (
            acceptance["ok"] == acceptance["requests"]
            and acceptance["http_429"] == 0
            and acceptance["pct_of_ceiling"] >= MIN_ACCEPTANCE_PCT
        )
        value = (
            f"{acceptance['ok']:,} ok, {acceptance['http_429']} × 429, "
            f"{acceptance['pct_of_ceiling']}% ({acceptance['elapsed_s']}s)"
        )
        target = f"{acceptance['requests']:,} ok, 0 × 429, ≥ {MIN_ACCEPTANCE_PCT:.0f}%"
        check(
            f"{acceptance['clients']} clients, {acceptance['requests']:,} requests at "
            f"{acceptance['rpm']:,.0f} RPM",
            value,
            target,
            meets,
        )
    return found


def notes(meta: dict[str, Any]) -> str:
    """The lines under the table: the sizes, then each target and whether it is met."""
    sizes = meta["sizes"]
    lines = [
        f"c=1: {sizes['latency_requests']} sequential requests; req/s: {sizes['rate_s']:.0f}s "
        f"at each concurrency; shared: {sizes['shared_clients']} AsyncOpenAI(max_retries=0) "
        f"clients, {sizes['shared_requests']} requests, upstream limited to "
        f"{sizes['shared_rpm']:,.0f} RPM (each gateway told it)"
    ]
    for t in meta["targets"]:
        mark = "yes" if t["meets"] else "NO"
        lines.append(f"target {t['what']}: {t['value']} (target {t['target']}): {mark}")
    floor = meta.get("floor_ratio_c64")
    if floor is not None:
        lines.append(
            f"floor: the bare relay on uvicorn (no limits, queue or metrics) reached {floor}× "
            "direct at c=64: about the most any gateway on uvicorn reaches on this machine"
        )
    return "\n".join(lines)


# -- chart ------------------------------------------------------------------------------------


def draw(plt: Any, rows: list[Row], meta: dict[str, Any]) -> Any:
    """Added latency at c=1, requests/s at each concurrency, and the shared-limit outcome."""
    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(14, 4.6))
    measured = [r for r in rows if "p50_ms" in r]
    colours = {DIRECT: "#7f7f7f", OURS: "#d62728", BARE: "#bcbd22", LITELLM: "#1f77b4"}
    gateways = [r for r in measured if r["name"] != DIRECT]
    for i, (key, label) in enumerate((("added_p50_ms", "p50"), ("added_p99_ms", "p99"))):
        xs = [j + (i - 0.5) * 0.38 for j in range(len(gateways))]
        values = [max(r[key], 0.01) for r in gateways]
        left.bar(xs, values, 0.38, color=[colours.get(r["name"]) for r in gateways],
                 alpha=1.0 if i == 0 else 0.55, label=label)  # fmt: skip
        for x, r in zip(xs, gateways, strict=True):
            left.text(x, max(r[key], 0.06), f"{r[key]:.2f}", ha="center", va="bottom", fontsize=7)
    left.set_xticks(range(len(gateways)))
    left.set_xticklabels([textwrap.fill(r["name"], 16) for r in gateways], fontsize=8)
    left.set_yscale("log")
    left.set_ylim(bottom=0.05)
    left.set_ylabel("ms added to the direct call (log)")
    left.set_title("added latency at concurrency 1 (p50, p99)", fontsize=9)
    width = 0.8 / max(len(measured), 1)
    for i, r in enumerate(measured):
        xs = [j + (i - (len(measured) - 1) / 2) * width for j in range(len(CONCURRENCIES))]
        values = [r.get(f"rps_c{c}") or 0.0 for c in CONCURRENCIES]
        middle.bar(xs, values, width, color=colours.get(r["name"]), label=r["name"])
        for x, v in zip(xs, values, strict=True):
            middle.text(x, v, f"{v:,.0f}", ha="center", va="bottom", fontsize=7)
    middle.set_xticks(range(len(CONCURRENCIES)))
    middle.set_xticklabels([f"concurrency {c}" for c in CONCURRENCIES])
    middle.set_yscale("log")
    top = max((r.get(f"rps_c{c}") or 0.0 for r in measured for c in CONCURRENCIES), default=10)
    middle.set_ylim(10, max(top, 10) * 4)  # room for the legend above the bars
    middle.set_ylabel("requests/s (log)")
    middle.set_title("throughput at 0 ms upstream latency", fontsize=9)
    middle.legend(fontsize=7)
    shared = [r for r in measured if "shared_pct_of_ceiling" in r]
    bars = [(r["name"], r["shared_pct_of_ceiling"], r["shared_429"], r["name"]) for r in shared]
    accepted = meta.get("acceptance")
    if accepted:
        label = f"{OURS}\n{accepted['requests']:,} at {accepted['rpm']:,.0f} RPM"
        bars.append((label, accepted["pct_of_ceiling"], accepted["http_429"], OURS))
    ys = range(len(bars))
    right.barh(ys, [b[1] for b in bars], color=[colours.get(b[3]) for b in bars])
    for y, (_, pct, refused, _) in zip(ys, bars, strict=True):
        right.text(pct, y, f" {pct:.0f}% · {refused:,} × 429", va="center", fontsize=7)
    right.set_yticks(list(ys))
    right.set_yticklabels([b[0] for b in bars], fontsize=7)
    right.invert_yaxis()
    right.set_xlim(0, 140)
    right.set_xlabel("% of the ceiling (ok requests/s against the limit)")
    sizes = meta["sizes"]
    right.set_title(
        f"{sizes['shared_clients']} clients (no retries), one upstream limit", fontsize=9
    )
    return figure
