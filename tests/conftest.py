"""Shared fixtures: simulators on 127.0.0.1 and the CLI as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import orjson
import pytest

from llmgather.bench._redis import RedisServer
from llmgather.sim import EmbeddedSimulator, SimConfig, start_simulator
from llmgather.sim.server import RunningSimulator

PROVIDER_KEYS = ("OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "ANTHROPIC_API_KEY")


@pytest.fixture(autouse=True)
def no_provider_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach a real provider, whatever the developer's shell exports."""
    for name in PROVIDER_KEYS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free 127.0.0.1 port for the whole session; tests keep apart by
    using keys of their own."""
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    async with await start_simulator(SimConfig(seed=1)) as running:
        yield running


@pytest.fixture
def threaded_sim() -> Iterator[EmbeddedSimulator]:
    with EmbeddedSimulator(SimConfig(seed=1)) as running:
        yield running


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PROVIDER_KEYS}
    env.update(extra)
    env["PYTHONWARNINGS"] = "error"
    env["COLUMNS"] = "120"
    return env


def run_cli(
    *args: str, timeout: float = 120, stdin: bytes | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """`llmgather ARGS…` as a subprocess, the way a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "llmgather", *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(**env),
    )


def write_prompts(path: Path, n: int, *, prefix: str = "Question") -> Path:
    lines = [orjson.dumps({"id": f"q{i}", "prompt": f"{prefix} {i}?"}) for i in range(n)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
