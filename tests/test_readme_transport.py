"""A transport handed to a `Client` is the caller's: the client leaves it open (it may serve
several clients), and the README's example closes it, so no "Unclosed client session"."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import llmgather
from llmgather.sim import EmbeddedSimulator
from tests.clihelpers import cli_env

README = Path(__file__).resolve().parent.parent / "README.md"


def transport_example() -> str:
    blocks = re.findall(r"^```python\n(.*?)^```$", README.read_text(), re.MULTILINE | re.DOTALL)
    found = [block for block in blocks if "AiohttpTransport(" in block]
    assert found, "the README should show a handed-in AiohttpTransport being closed"
    return found[0]


def test_the_readme_transport_example_runs_and_leaves_no_session_open(tmp_path: Path) -> None:
    example = transport_example()
    assert "aclose()" in example
    script = tmp_path / "example.py"
    script.write_text(example)
    done = subprocess.run(
        # -X dev: asyncio's debug mode and every ResourceWarning shown (an unclosed socket too)
        [sys.executable, "-X", "dev", "-W", "always", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**cli_env(), "PYTHONWARNINGS": "always"},  # no key: the built-in simulator
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip(), done.stderr  # an answer, from the simulator
    assert "Unclosed" not in done.stderr and "ResourceWarning" not in done.stderr, done.stderr


async def test_a_client_leaves_a_handed_in_transport_open_for_the_next(
    threaded_sim: EmbeddedSimulator,
) -> None:
    transport = llmgather.transport.AiohttpTransport()
    try:
        for question in ("First client?", "Second client, same transport?"):
            async with llmgather.Client(
                "openai:gpt-4o-mini",
                base_url=threaded_sim.base_url + "/v1",
                api_key="k",
                transport=transport,
            ) as client:
                assert await client.complete(question)
    finally:
        await transport.aclose()
