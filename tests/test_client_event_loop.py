"""A `Client` belongs to the event loop it was entered on: used from another (a second
`asyncio.run`, a thread's own loop) it says so, instead of a bare "Event loop is closed" from
deep inside a send. On the simulator over loopback."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading

import llmgather
from llmgather.sim import EmbeddedSimulator
from tests.clihelpers import cli_env

ANOTHER_LOOP = "this Client was entered \\(`async with`\\) on another event loop"


def client_for(sim: EmbeddedSimulator) -> llmgather.Client:
    return llmgather.Client("openai:gpt-4o-mini", base_url=sim.base_url + "/v1", api_key="k")


# Entered and used in one `asyncio.run`, then used in a second: what a script or a notebook
# does. In a process of its own, since the first loop's connections are left open for good.
SCRIPT = """
import asyncio, sys
import llmgather

async def enter(client):
    await client.__aenter__()
    assert await client.complete("Why do some birds migrate?")

async def again(client, use):
    if use == "complete":
        return await client.complete("And again?")
    if use == "gather":
        return await client.gather(["And again?"])
    if use == "map":
        return [result async for result in client.map(["And again?"])]
    if use == "call":
        return await client.call(asyncio.sleep, 0)
    return [piece async for piece in client.stream("And again?")]

for use in ("complete", "gather", "map", "call", "stream"):
    client = llmgather.Client("openai:gpt-4o-mini", base_url=sys.argv[1], api_key="k")
    asyncio.run(enter(client))
    try:
        asyncio.run(again(client, use))
    except RuntimeError as exc:
        print(use, "RuntimeError:", exc)
    else:
        print(use, "no error")
"""


def test_a_client_used_after_its_loop_closed_says_so(threaded_sim: EmbeddedSimulator) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, threaded_sim.base_url + "/v1"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**cli_env(), "PYTHONWARNINGS": "ignore"},  # the first loop's sockets, left open
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["complete", "gather", "map", "call", "stream"]
    for line in lines:
        assert re.search(ANOTHER_LOOP, line), line
        assert "which has since closed" in line and "one Client per event loop" in line


def test_a_client_used_from_another_running_loop_says_so(threaded_sim: EmbeddedSimulator) -> None:
    async def main() -> None:
        async with client_for(threaded_sim) as client:
            assert await client.complete("Why?")
            failure: list[BaseException] = []

            def elsewhere() -> None:
                try:
                    asyncio.run(client.complete("From a thread?"))
                except BaseException as exc:  # handed to the test's thread
                    failure.append(exc)

            thread = threading.Thread(target=elsewhere)
            thread.start()
            await asyncio.to_thread(thread.join)
            assert len(failure) == 1 and isinstance(failure[0], RuntimeError)
            assert "is another one" in str(failure[0])
            assert await client.complete("Still fine here?")  # its own loop is unaffected
            assert client.statistics().done == 2  # statistics: readable from anywhere

    asyncio.run(main())
