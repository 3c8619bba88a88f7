"""The dashboard at `/`: its event stream read over loopback, and the page itself in a real
headless Chromium (Debian's `chromium`, driven by Playwright; no browser download), watching a
job started through the API reach 100%. The screenshot lands in tests/artifacts/."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import orjson
import pytest
from playwright.async_api import async_playwright, expect

from llmgather._config import Limits
from llmgather.limits import LocalLimiter
from llmgather.service import ServiceSettings
from llmgather.service.dashboard.feed import DashboardFeed
from llmgather.service.routes import dashboard
from llmgather.sim import SimConfig
from tests.servicefixtures import serving

CHROMIUM = shutil.which("chromium")
ON_CI = os.environ.get("CI") == "true"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACT = Path(__file__).parents[1] / "artifacts" / "dashboard.png"
TOKEN = "dash-t0ken-5b1e"
JOB_LINES = 12


def settings(tmp_path: Path, **extra: Any) -> ServiceSettings:
    return ServiceSettings(
        limits=Limits(rpm=600),
        simulator=SimConfig(latency_ms=20, seed=1),
        jobs_dir=tmp_path / "jobs",
        **extra,
    )


async def read_events(response: aiohttp.ClientResponse) -> list[dict[str, Any]]:
    """Every `data:` event of an SSE response, until the server ends it."""
    events = []
    async for line in response.content:
        if line.startswith(b"data: "):
            events.append(orjson.loads(line[6:]))
    return events


class FakeEngine:
    """The engine's counters, as the feed reads them, set by the test."""

    def __init__(self, clock: list[float]) -> None:
        self._clock = clock
        self.counts = {"sent": 0, "retries": 0, "input_tokens": 0, "output_tokens": 0}

    def statistics(self) -> Any:
        fields = dict.fromkeys(("in_flight", "done", "failed", "http_429"), 0)
        return SimpleNamespace(**fields, **self.counts, elapsed_s=self._clock[0])


def test_the_pace_is_the_change_of_the_counts_over_the_last_minute() -> None:
    now = [0.0]
    engine = FakeEngine(now)
    upstream = SimpleNamespace(
        model="m",
        simulated=True,
        limiter=LocalLimiter(Limits(rpm=600)),
        engine=engine,
    )
    state = SimpleNamespace(
        upstream=upstream, gateway=SimpleNamespace(queue=SimpleNamespace(waiting=3, refused=1))
    )
    feed = DashboardFeed(state, clock=lambda: now[0])

    def pace_at(t: float, **counts: int) -> dict[str, float]:
        now[0] = t
        engine.counts.update(counts)
        snapshot = feed.snapshot()
        assert snapshot["queue"] == {"waiting": 3, "refused": 1}
        assert snapshot["limits"] == {"rpm": 600}
        return snapshot["per_minute"]

    assert pace_at(0.0)["requests"] == 0
    # 20 requests in the first 2 s read as if over 10 s (no 600/min out of one burst).
    assert pace_at(2.0, sent=20, input_tokens=100, output_tokens=500) == {
        "requests": 120.0,
        "tokens": 3600.0,
        "input_tokens": 600.0,
        "output_tokens": 3000.0,
    }
    assert pace_at(30.0, sent=30, retries=10)["requests"] == 80.0  # 40 in 30 s
    assert pace_at(60.0, sent=60, retries=10)["requests"] == 70.0  # 70 in the minute
    for t in range(61, 90):
        pace_at(float(t))
    # At 90 s the minute began at 30 s: 30 sent (and no retry) since.
    assert pace_at(90.0)["requests"] == 30.0
    assert pace_at(200.0)["requests"] == 0.0


async def test_event_stream_sends_snapshots_at_once_and_ends_by_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Short streams keep the test short; the page's EventSource reconnects after each.
    monkeypatch.setattr(dashboard, "STREAM_S", 1.5)
    key = "sk-canary-dashboard-77c1"
    async with (
        serving(settings(tmp_path, api_key=key, model="openai:gpt-4o-mini")) as base_url,
        aiohttp.ClientSession() as http,
    ):
        async with http.get(base_url + "/dashboard/events") as response:
            assert response.status == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = await read_events(response)  # returns: the stream ended by itself
    assert 1 <= len(events) <= 2
    first = events[0]
    assert first["limits"] == {"rpm": 600}
    assert first["queue"] == {"waiting": 0, "refused": 0}
    assert first["in_flight"] == 0
    assert first["jobs"] == []
    assert key not in orjson.dumps(events).decode()


async def test_the_dashboard_takes_the_token_in_its_address_and_nothing_else_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dashboard, "STREAM_S", 0.1)
    async with (
        serving(settings(tmp_path, token=TOKEN)) as base_url,
        aiohttp.ClientSession() as http,
    ):
        statuses = {}
        for path in (
            "/",
            f"/?token={TOKEN}",
            "/?token=wrong",
            f"/dashboard/events?token={TOKEN}",
            "/dashboard/events?token=wrong",
            f"/v1/models?token={TOKEN}",
            f"/v1/jobs?token={TOKEN}",
        ):
            async with http.get(base_url + path) as response:
                await response.read()
                statuses[path.replace(TOKEN, "T")] = response.status
    assert statuses == {
        "/": 401,
        "/?token=T": 200,
        "/?token=wrong": 401,
        "/dashboard/events?token=T": 200,
        "/dashboard/events?token=wrong": 401,
        "/v1/models?token=T": 401,
        "/v1/jobs?token=T": 401,
    }


async def test_the_page_needs_nothing_from_elsewhere(tmp_path: Path) -> None:
    async with serving(settings(tmp_path)) as base_url, aiohttp.ClientSession() as http:
        async with http.get(base_url + "/") as response:
            assert response.status == 200
            assert response.headers["content-type"].startswith("text/html")
            page = await response.text()
    assert "<script>" in page and "EventSource" in page  # the script inlined
    assert "/* dashboard.js */" not in page and "/* dashboard.css */" not in page
    # No CDN, no second request: nothing is loaded from any address.
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:)?//""", page)
    assert not re.search(r"""<(script|link)[^>]*(src|href)=""", page)


@pytest.mark.skipif(
    CHROMIUM is None and not ON_CI,
    reason="needs Debian's chromium on PATH (apt-get install chromium; .ci/run installs it)",
)
async def test_dashboard_in_chromium_shows_a_job_reach_100_percent(tmp_path: Path) -> None:
    assert CHROMIUM is not None, "CI=true: chromium must be installed (see .ci/run)"
    lines = b"".join(orjson.dumps({"prompt": f"Dashboard {i}?"}) + b"\n" for i in range(JOB_LINES))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        serving(settings(tmp_path, token=TOKEN)) as base_url,
        aiohttp.ClientSession(headers=auth) as http,
        async_playwright() as playwright,
    ):
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 860})
            await page.goto(f"{base_url}/?token={TOKEN}")
            await expect(page.locator("#connection")).to_have_text("live", timeout=10_000)
            await expect(page.locator("#model")).to_contain_text("(simulator)")
            await expect(page.locator("#queue-depth")).to_have_text("0")
            await expect(page.locator("#limit-rpm")).to_contain_text("rpm 600")
            await expect(page.locator("#requests-limit")).to_have_text("of 600 rpm")
            await expect(page.locator("#no-jobs")).to_be_visible()

            async with http.post(
                base_url + "/v1/jobs",
                data=lines,
                headers={"content-type": "application/jsonl"},
            ) as response:
                assert response.status == 202, await response.text()
                job = await response.json()

            row = page.locator(f'tr[data-job-id="{job["id"]}"]')
            await expect(row).to_be_visible(timeout=10_000)
            await expect(row.locator(".pct")).to_have_text("100%", timeout=30_000)
            await expect(row.locator(".status")).to_have_text("done", timeout=10_000)
            await expect(row).to_contain_text(f"{JOB_LINES} / {JOB_LINES}")
            await expect(page.locator("#done")).to_have_text(str(JOB_LINES))
            await expect(page.locator("#in-flight")).to_have_text("0")
            await expect(page.locator("#requests-per-minute")).not_to_have_text("0")
            await expect(page.locator("#no-jobs")).to_be_hidden()
            ARTIFACT.parent.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACT), full_page=True)
        finally:
            await browser.close()
    assert ARTIFACT.stat().st_size > 10_000
