"""A service job (`POST /v1/jobs`) meeting a spent quota ends, saying so: it is not left
`queued` with nothing to run it, and its items are not each sent to fail the same way."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.service.jobclient import JSONL, job_of, prompts, settings_for, until
from tests.servicefixtures import serving
from tests.simfixtures import running, sim_stats


async def test_a_service_job_stopped_by_a_spent_quota_fails_naming_it(tmp_path: Path) -> None:
    async with (
        running("quota=1", latency_ms=20) as sim,
        serving(settings_for(sim, tmp_path)) as base,
        aiohttp.ClientSession() as http,
    ):
        async with http.post(f"{base}/v1/jobs", data=prompts(30), headers=JSONL) as response:
            assert response.status == 202
            created = await response.json()

        async def ended() -> bool:
            return (await job_of(http, base, created["id"]))["status"] in ("done", "failed")

        await until(ended, "the job ends")
        job = await job_of(http, base, created["id"])
        received = (await sim_stats(sim))["received"]
    assert job["status"] == "failed"
    assert "quota is spent" in job["error"] and "30 items were not done" in job["error"]
    assert (job["done"], job["failed"]) == (0, 0)
    assert received <= 10  # the first wave at most, not each of the 30
