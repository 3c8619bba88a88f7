"""The CLI as a user runs it, for the tests: `llmgather ARGS…` as a subprocess with no provider
key or proxy from the developer's shell, and the JSONL files it reads and writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

PROVIDER_KEYS = ("OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "ANTHROPIC_API_KEY")
# A developer's proxy would carry the tests' loopback traffic: the proxy tests set their own.
PROXY_VARIABLES = tuple(
    name
    for lower in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    for name in (lower, lower.upper())
)


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PROVIDER_KEYS + PROXY_VARIABLES}
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
