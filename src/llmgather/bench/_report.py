"""Readable tables, the JSON summary and the matplotlib charts of the scenarios."""

from __future__ import annotations

from pathlib import Path
from typing import Any

Row = dict[str, Any]

COLUMNS: dict[str, list[tuple[str, str, str]]] = {
    # (header, key, format)
    "timing": [
        ("requests", "requests", "{:,}"),
        ("wall s", "wall_s", "{:.2f}"),
        ("speedup", "speedup", "{:.1f}×"),
        ("ok", "ok", "{:,}"),
    ],
    "ceiling": [
        ("ok", "ok", "{:,}"),
        ("failed", "failed", "{:,}"),
        ("429s", "http_429", "{:,}"),
        ("429 %", "pct_429", "{:.1f}"),
        ("wall s", "wall_s", "{:.1f}"),
        ("% of ceiling", "pct_of_ceiling", "{:.1f}"),
    ],
    "overhead": [
        ("req/s", "rps", "{:,.0f}"),
        ("× aiohttp", "ratio_to_aiohttp", "{:.2f}"),
        ("CPU s/1k", "cpu_per_1k", "{:.3f}"),
        ("CPU × aiohttp", "cpu_ratio_to_aiohttp", "{:.2f}"),
        ("ok", "ok", "{:,}"),
        ("sim CPU %", "sim_cpu_pct", "{:.0f}"),
    ],
    "memory": [
        ("inputs", "inputs", "{:,}"),
        ("peak RSS MB", "peak_rss_mb", "{:.1f}"),
        ("ok", "ok", "{:,}"),
        ("wall s", "wall_s", "{:.1f}"),
    ],
    "seams": [
        ("requests", "requests", "{:,}"),
        ("ok", "ok", "{:,}"),
        ("failed", "failed", "{:,}"),
        ("429s", "http_429", "{:,}"),
        ("wall s", "wall_s", "{:.2f}"),
        ("bound s", "bound_s", "{:.2f}"),
        ("wall/bound", "ratio", "{:.3f}"),
        ("target", "target", "≤ {:.2f}"),
        ("wall/(bound-burst)", "ratio_paced", "{:.3f}"),
        ("meets", "meets", "{}"),
    ],
    "scale": [
        ("ok", "ok", "{:,}"),
        ("429s", "http_429", "{:,}"),
        ("429 %", "pct_429", "{:.2f}"),
        ("wall s", "wall_s", "{:.1f}"),
        ("% of ceiling", "pct_of_ceiling", "{:.1f}"),
    ],
    "gateway": [
        ("p50 ms", "p50_ms", "{:.2f}"),
        ("p99 ms", "p99_ms", "{:.2f}"),
        ("+p50 ms", "added_p50_ms", "{:.2f}"),
        ("+p99 ms", "added_p99_ms", "{:.2f}"),
        ("req/s c64", "rps_c64", "{:,.0f}"),
        ("× direct", "ratio_c64", "{:.2f}"),
        ("req/s c256", "rps_c256", "{:,.0f}"),
        ("× direct", "ratio_c256", "{:.2f}"),
        ("shared ok", "shared_ok", "{:,}"),
        ("429s", "shared_429", "{:,}"),
        ("failed", "shared_failed", "{:,}"),
        ("wall s", "shared_wall_s", "{:.1f}"),
        ("% of ceiling", "shared_pct_of_ceiling", "{:.1f}"),
    ],
    "cost": [
        ("cap $", "cap_usd", "{:.6f}"),
        ("spent $", "spent_usd", "{:.6f}"),
        ("spent/cap", "spent_over_cap", "{:.4f}"),
        ("past cap $", "past_cap_usd", "{:.7f}"),
        ("1 reservation $", "one_reservation_usd", "{:.7f}"),
        ("ok", "ok", "{:,}"),
        ("unsent", "unsent", "{:,}"),
        ("lost", "lost", "{:,}"),
        ("sent", "sent", "{:,}"),
        ("wall s", "wall_s", "{:.2f}"),
        ("× first run", "vs_first", "{:.3f}"),
        ("estimate $", "estimated_usd", "{:.6f}"),
        ("error %", "error_pct", "{:+.2f}"),
    ],
}

# The figures the issue asks for, per scenario, in the final JSON line.
FIGURES = {
    "timing": ("requests", "wall_s", "speedup"),
    "ceiling": ("ok", "failed", "http_429", "pct_of_ceiling", "wall_s", "pct_429"),
    "overhead": ("rps", "cpu_per_1k", "ratio_to_aiohttp", "cpu_ratio_to_aiohttp", "sim_cpu_pct"),
    "memory": ("inputs", "peak_rss_mb", "ok"),
    "seams": (
        "ok",
        "failed",
        "http_429",
        "wall_s",
        "bound_s",
        "ratio",
        "target",
        "meets",
        "ratio_paced",
    ),
    "scale": ("processes", "setup", "ok", "http_429", "pct_429", "wall_s", "pct_of_ceiling"),
    "cost": (
        "cap_usd",
        "spent_usd",
        "spent_over_cap",
        "within_bound",
        "ok",
        "unsent",
        "lost",
        "sent",
        "wall_s",
        "vs_first",
        "cached",
        "estimated_usd",
        "error_pct",
    ),
    "gateway": (
        "p50_ms",
        "p99_ms",
        "added_p50_ms",
        "added_p99_ms",
        "rps_c64",
        "rps_c256",
        "ratio_c64",
        "ratio_c256",
        "shared_ok",
        "shared_429",
        "shared_failed",
        "shared_pct_of_ceiling",
    ),
}


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "—"
    try:
        return fmt.format(value)
    except (TypeError, ValueError):
        return str(value)


def table(scenario: str, rows: list[Row]) -> str:
    """A plain fixed-width table, one line per contender, ours marked with ◆."""
    columns = COLUMNS[scenario]
    header = ["contender", *(c[0] for c in columns)]
    body = [
        [
            ("◆ " if "llmgather" in row["name"] else "  ")
            + row["name"]
            + (f" [{row['error']}]" if row.get("error") else ""),
            *(_cell(row.get(key), fmt) for _, key, fmt in columns),
        ]
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w)
            for i, (h, w) in enumerate(zip(header, widths, strict=True))
        )
    ]
    lines.append("  ".join("-" * w for w in widths))
    for line in body:
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(line, widths, strict=True))
            )
        )
    return "\n".join(lines)


def summary_rows(scenario: str, rows: list[Row]) -> list[Row]:
    """The contender objects of the final JSON line: `name` and the scenario's figures."""
    return [
        {
            "name": row["name"],
            **{k: row.get(k) for k in FIGURES[scenario]},
            **({"error": row["error"]} if row.get("error") else {}),
        }
        for row in rows
    ]


# -- charts ----------------------------------------------------------------------------------


def chart(scenario: str, rows: list[Row], meta: dict[str, Any], path: Path) -> Path | None:
    """The scenario's PNG at `path`; None for a scenario without a chart (seams: two ratios)."""
    draw = {
        "timing": _timing,
        "ceiling": _ceiling,
        "overhead": _overhead,
        "memory": _memory,
        "scale": _scale,
        "gateway": _gateway,
    }.get(scenario)
    if draw is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = draw(plt, rows, meta)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _colour(name: str) -> str:
    return "#d62728" if "llmgather" in name else "#7f7f7f"


def _timing(plt: Any, rows: list[Row], meta: dict[str, Any]) -> Any:
    names = list(dict.fromkeys(r["name"] for r in rows))
    sizes = sorted({r["requests"] for r in rows})
    figure, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / len(names)
    palette = plt.get_cmap("tab10")
    for i, name in enumerate(names):
        walls = [
            next((r["wall_s"] for r in rows if r["name"] == name and r["requests"] == s), 0)
            for s in sizes
        ]
        xs = [j + i * width for j in range(len(sizes))]
        ax.bar(
            xs, walls, width, label=name, color=_colour(name) if "llmgather" in name else palette(i)
        )
    ax.set_xticks([j + width * (len(names) - 1) / 2 for j in range(len(sizes))])
    ax.set_xticklabels([f"{s} requests" for s in sizes])
    ax.set_yscale("log")
    ax.set_ylabel("wall time, s (log)")
    ax.set_title(f"timing: {meta.get('latency_ms', 0):.0f} ms simulated latency")
    ax.legend(fontsize=8)
    return figure


def _ceiling(plt: Any, rows: list[Row], meta: dict[str, Any]) -> Any:
    figure, ax = plt.subplots(figsize=(9, 4.8))
    names = [r["name"] for r in rows]
    ceiling = meta.get("ceiling_rps", 0)
    # ok items per second over max(wall, ceiling time): giving up early does not look fast.
    throughput = [ceiling * r["pct_of_ceiling"] / 100.0 for r in rows]
    ys = range(len(rows))
    ax.barh(ys, throughput, color=[_colour(n) for n in names])
    ax.axvline(ceiling, color="black", linestyle="--", label=f"ceiling {ceiling:.1f} req/s")
    for y, r, t in zip(ys, rows, throughput, strict=True):
        ax.text(
            t,
            y,
            f"  {r['pct_of_ceiling']:.0f}%  · {r['http_429']:,} × 429 · {r['failed']} failed",
            va="center",
            fontsize=8,
        )
    ax.set_yticks(list(ys))
    ax.set_yticklabels(names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(
        "achieved throughput, ok items/s (a run shorter than the ceiling time counts as that long)"
    )
    ax.set_xlim(0, max([ceiling, *throughput]) * 1.6)
    plan = meta.get("plan", {})
    ax.set_title(f"ceiling: {plan.get('rpm', 0):.0f} RPM and {plan.get('tpm', 0):,.0f} TPM")
    ax.legend(fontsize=8, loc="lower right")
    return figure


def _scale(plt: Any, rows: list[Row], meta: dict[str, Any]) -> Any:
    figure, ax = plt.subplots(figsize=(9, 4.5))
    counts = sorted({r["processes"] for r in rows})
    colours = {"redis": "#d62728", "local": "#7f7f7f", "whole": "#ff7f0e", "split": "#1f77b4"}
    labelled: set[str] = set()
    width = 0.8 / max(sum(1 for r in rows if r["processes"] == c) for c in counts)
    for j, count in enumerate(counts):
        group = [r for r in rows if r["processes"] == count]
        for i, row in enumerate(group):
            x = j + (i - (len(group) - 1) / 2) * width
            setup = row["setup"]
            label = None if setup in labelled else setup
            labelled.add(setup)
            ax.bar(x, row["pct_of_ceiling"], width, color=colours.get(setup), label=label)
            note = f"{row['http_429']:,}×429" + (
                f"\n{row['failed']} failed" if row["failed"] else ""
            )
            ax.text(x, row["pct_of_ceiling"], note, ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(counts)))
    ax.set_xticklabels([f"{c} process{'es' if c > 1 else ''}" for c in counts])
    ax.set_ylabel("% of the key's ceiling")
    ax.set_ylim(0, 118)
    plan = meta.get("plan", {})
    ax.set_title(
        f"scale: one key at {plan.get('rpm', 0):.0f} RPM and {plan.get('tpm', 0):,.0f} TPM: "
        "shared through Redis, each told all of it (whole), each told its share (split)",
        fontsize=9,
    )
    ax.legend(fontsize=8, loc="lower right")
    return figure


def _gateway(plt: Any, rows: list[Row], meta: dict[str, Any]) -> Any:
    from llmgather.bench.gateway import draw  # the scenario draws its own three panels

    return draw(plt, rows, meta)


def _overhead(plt: Any, rows: list[Row], meta: dict[str, Any]) -> Any:
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    names = [r["name"] for r in rows]
    ys = range(len(rows))
    colours = [_colour(n) for n in names]
    left.barh(ys, [r["rps"] for r in rows], color=colours)
    left.set_xlabel("requests/s")
    right.barh(ys, [(r["cpu_per_1k"] or 0) for r in rows], color=colours)
    right.set_xlabel("client CPU s per 1,000 requests")
    for ax in (left, right):
        ax.set_yticks(list(ys))
        ax.set_yticklabels(names if ax is left else [""] * len(names), fontsize=8)
        ax.invert_yaxis()
    for y, r in zip(ys, rows, strict=True):
        if r.get("ratio_to_aiohttp") is not None:
            left.text(r["rps"], y, f" {r['ratio_to_aiohttp']:.2f}×", va="center", fontsize=8)
    figure.suptitle(
        f"overhead: {meta.get('requests', 0):,} requests at concurrency "
        f"{meta.get('concurrency', 0)}, 0 ms latency"
    )
    return figure


def _memory(plt: Any, rows: list[Row], meta: dict[str, Any]) -> Any:
    figure, ax = plt.subplots(figsize=(7, 4.5))
    for name in dict.fromkeys(r["name"] for r in rows):
        points = sorted((r["inputs"], r["peak_rss_mb"]) for r in rows if r["name"] == name)
        ax.plot(
            [p[0] for p in points],
            [p[1] for p in points],
            marker="o",
            label=name,
            color=_colour(name) if "llmgather" in name else None,
        )
        for x, y in points:
            ax.annotate(
                f"{y:.0f} MB", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("input lines (log)")
    ax.set_ylabel("peak RSS, MB (log)")
    ax.set_title("memory: peak RSS against input size")
    ax.legend(fontsize=8)
    return figure
