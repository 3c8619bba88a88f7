"""The service as an operator meets it: the command, its auth, its health checks, and its own
OpenAPI schema fuzzed by schemathesis."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import openai
import pytest
from openai import AsyncOpenAI

from llmgather.service import ServiceSettings
from tests.clihelpers import cli_env, run_cli
from tests.servicefixtures import serving
from tests.simfixtures import running

MESSAGES = [{"role": "user", "content": "Why do some birds migrate?"}]


def test_serve_refuses_to_bind_off_loopback_without_a_token() -> None:
    done = run_cli("serve", "--host", "0.0.0.0", "--port", "0", timeout=30)
    assert done.returncode == 2
    assert "--token" in done.stderr and "0.0.0.0" in done.stderr


def test_serve_runs_on_the_simulator_and_stops_gracefully(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            os.path.join(os.path.dirname(sys.executable), "llmgather"),
            "serve",
            "--port",
            "0",
            "--jobs-dir",
            str(tmp_path),
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
        cwd=tmp_path,
    )
    try:
        banner = ""
        assert process.stderr is not None
        while "llmgather serve:" not in banner:
            line = process.stderr.readline()
            assert line, f"serve exited early: {banner}"
            banner += line
        assert "simulator" in banner.lower()
        url = re.search(r"http://127\.0\.0\.1:\d+", banner)
        assert url is not None
        answer = asyncio.run(_complete(url.group(0)))
        assert answer
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
        rest = process.stderr.read()  # type: ignore[union-attr]
        process.stderr.close()  # type: ignore[union-attr]
    # uvicorn shuts down gracefully, then re-raises the signal, as a stopped program should.
    assert code in (0, -signal.SIGTERM)
    assert "Traceback" not in rest


async def _complete(url: str) -> str:
    async with AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as client:
        answer = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    return answer.choices[0].message.content or ""


async def test_a_token_guards_every_route_but_the_health_checks() -> None:
    async with (
        running(seed=1) as sim,
        serving(
            ServiceSettings(
                model="openai:gpt-4o-mini",
                base_url=sim.base_url + "/v1",
                api_key="upstream-key",
                token="s3cret-token",
            )
        ) as url,
    ):
        async with aiohttp.ClientSession() as session:
            for path in ("/healthz", "/readyz"):
                async with session.get(url + path) as response:
                    assert response.status == 200
            async with session.get(url + "/v1/models") as response:
                assert response.status == 401
            wrong = {"authorization": "Bearer s3cret-tokeN"}
            async with session.get(url + "/v1/models", headers=wrong) as response:
                assert response.status == 401
                assert "s3cret" not in await response.text()
        async with AsyncOpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0) as client:
            with pytest.raises(openai.AuthenticationError):
                await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        async with AsyncOpenAI(
            base_url=url + "/v1", api_key="s3cret-token", max_retries=0
        ) as client:
            answer = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            assert answer.choices[0].message.content
        assert sim.handler.stats.received == 1


async def test_schemathesis_finds_no_server_error_in_the_services_own_schema(
    tmp_path: Path,
) -> None:
    schemathesis = shutil.which("schemathesis", path=os.path.dirname(sys.executable))
    assert schemathesis is not None, "schemathesis is in the test extra"
    async with running(seed=1) as sim:
        settings = ServiceSettings(
            model="openai:gpt-4o-mini",
            base_url=sim.base_url + "/v1",
            api_key="k",
            jobs_dir=tmp_path / "jobs",
        )
        async with serving(settings) as url:
            process = await asyncio.create_subprocess_exec(
                schemathesis,
                "run",
                url + "/openapi.json",
                "--checks",
                "not_a_server_error",
                "--max-examples",
                "15",
                "--seed",
                "1",
                "--request-timeout",
                "20",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                cwd=tmp_path,
                env=cli_env(),
            )
            output, _ = await asyncio.wait_for(process.communicate(), timeout=240)
    report = output.decode(errors="replace")
    assert process.returncode == 0, report[-4000:]


async def test_a_request_in_flight_when_serve_is_stopped_is_answered(tmp_path: Path) -> None:
    # SIGTERM: the service stops accepting, says it is not ready, and still answers the
    # request it is waiting on upstream before it exits.
    async with running(seed=1, latency_ms=1500, latency_jitter=0) as sim:
        process = await asyncio.create_subprocess_exec(
            os.path.join(os.path.dirname(sys.executable), "llmgather"),
            "serve",
            "--port",
            "0",
            "--model",
            "openai:gpt-4o-mini",
            "--base-url",
            sim.base_url + "/v1",
            "--api-key",
            "k",
            "--jobs-dir",
            str(tmp_path),
            stderr=asyncio.subprocess.PIPE,
            env=cli_env(),
            cwd=tmp_path,
        )
        assert process.stderr is not None
        banner = b""
        while b"llmgather serve:" not in banner:
            line = await asyncio.wait_for(process.stderr.readline(), timeout=30)
            assert line, banner
            banner += line
        found = re.search(rb"http://127\.0\.0\.1:\d+", banner)
        assert found is not None
        url = found.group(0).decode()
        try:
            answer = asyncio.create_task(_complete(url))
            for _ in range(200):  # until the request is upstream
                if sim.handler.stats.received:
                    break
                await asyncio.sleep(0.05)
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(answer, timeout=30)
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(process.wait(), timeout=30)
            rest = await process.stderr.read()
    assert code in (0, -signal.SIGTERM)
    assert b"Traceback" not in rest
