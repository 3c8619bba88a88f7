"""Proxies as a user meets them: `HTTP_PROXY=… llmgather run …` and `HTTPS_PROXY=…` (a CONNECT
tunnel, TLS to the server behind it) through a real proxy (proxy.py) on 127.0.0.1, credentials
refused without being shown, and the library's `Client`: the proxy variables honoured by
default, `trust_env=False` to ignore them, the built-in simulator always reached directly."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import orjson
import pytest
import trustme

from llmgather import APIConnectionError, Client, RetryPolicy
from llmgather.sim import EmbeddedSimulator, SimConfig
from llmgather.sim.server import RunningSimulator
from tests.clihelpers import cli_env, read_jsonl, run_cli, write_prompts
from tests.servicefixtures import served_by_cli
from tests.simfixtures import sim_stats_blocking
from tests.transport.proxyprocess import ProxyProcess, proxy_process

WRONG = "wrong!Secret-7e1"
ONCE = RetryPolicy(max_attempts=1, max_retry_wait=0.5)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    with proxy_process(tmp_path_factory.mktemp("proxy")) as running:
        yield running


@pytest.fixture(scope="module")
def guarded_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    with proxy_process(tmp_path_factory.mktemp("guarded"), basic_auth="user:right") as running:
        yield running


@pytest.fixture
def sim_thread() -> Iterator[EmbeddedSimulator]:
    with EmbeddedSimulator(SimConfig(seed=1)) as running:
        yield running


def received(sim: EmbeddedSimulator) -> int:
    return int(sim_stats_blocking(sim.base_url)["received"])


def run_args(tmp_path: Path, base_url: str, n: int = 3) -> list[str]:
    prompts = write_prompts(tmp_path / "prompts.jsonl", n)
    out = tmp_path / "out.jsonl"
    return ["run", str(prompts), "-o", str(out), "--model", "openai:gpt-4o-mini",
            "--base-url", base_url]  # fmt: skip


def test_http_proxy_carries_a_run_to_an_http_server(
    tmp_path: Path, proxy: ProxyProcess, sim_thread: EmbeddedSimulator
) -> None:
    args = run_args(tmp_path, sim_thread.base_url + "/v1")
    result = run_cli(*args, HTTP_PROXY=proxy.url(), OPENAI_API_KEY="sk-test")
    assert result.returncode == 0, result.stderr
    lines = read_jsonl(tmp_path / "out.jsonl")
    assert [line["status"] for line in lines] == ["ok"] * 3
    assert received(sim_thread) == 3
    # The proxy's own log: every request it forwarded, to the simulator's address.
    forwarded = proxy.wait_for(f"POST 127.0.0.1:{sim_thread.port}/v1/chat/completions", 3)
    assert len(forwarded) == 3


def test_a_proxy_refusing_the_credentials_fails_the_run_without_showing_them(
    tmp_path: Path, guarded_proxy: ProxyProcess, sim_thread: EmbeddedSimulator
) -> None:
    args = run_args(tmp_path, sim_thread.base_url + "/v1", n=2)
    proxy_url = guarded_proxy.url(f"user:{WRONG.replace('!', '%21')}")
    result = run_cli(*args, http_proxy=proxy_url, OPENAI_API_KEY="sk-test")
    assert result.returncode == 1, result.stderr
    lines = read_jsonl(tmp_path / "out.jsonl")
    assert [line["status"] for line in lines] == ["error"] * 2
    message = lines[0]["error"]["message"]
    assert f"the proxy 127.0.0.1:{guarded_proxy.port} (from http_proxy)" in message
    assert lines[0]["attempts"] == 1  # a refusal is not retried
    assert lines[0]["error"]["status_code"] == 407
    everything = result.stdout + result.stderr + (tmp_path / "out.jsonl").read_text()
    for secret in (WRONG, "Secret-7e1", "%21Secret"):
        assert secret not in everything
    assert received(sim_thread) == 0


def test_no_proxy_sends_a_run_directly(
    tmp_path: Path, sim_thread: EmbeddedSimulator, closed_port: Callable[[], int]
) -> None:
    args = run_args(tmp_path, sim_thread.base_url + "/v1", n=2)
    dead = f"http://127.0.0.1:{closed_port()}"
    result = run_cli(*args, HTTP_PROXY=dead, NO_PROXY="localhost,127.0.0.1", OPENAI_API_KEY="k")
    assert result.returncode == 0, result.stderr
    assert received(sim_thread) == 2


def test_a_proxy_llmgather_cannot_use_stops_the_run_before_anything_is_sent(
    tmp_path: Path, sim_thread: EmbeddedSimulator
) -> None:
    args = run_args(tmp_path, sim_thread.base_url + "/v1", n=2)
    socks = f"socks5://user:{WRONG}@127.0.0.1:1080"
    result = run_cli(*args, HTTP_PROXY=socks, OPENAI_API_KEY="sk-test")
    assert result.returncode == 2, result.stderr
    assert "HTTP_PROXY names a socks5:// proxy" in result.stderr
    assert WRONG not in result.stdout + result.stderr
    assert received(sim_thread) == 0


# -- https:// through a CONNECT tunnel -------------------------------------------------------


@contextlib.asynccontextmanager
async def tls_front(port: int, tls: ssl.SSLContext) -> AsyncIterator[int]:
    """A TLS server relaying every connection to 127.0.0.1:`port` (the simulator, which speaks
    plain HTTP): an https:// OpenAI-compatible server."""
    pipes: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        inner_reader, inner_writer = await asyncio.open_connection("127.0.0.1", port)
        for task in (pipe(reader, inner_writer), pipe(inner_reader, writer)):
            pipes.add(asyncio.ensure_future(task))

    listening = await asyncio.start_server(relay, "127.0.0.1", 0, ssl=tls)
    try:
        yield listening.sockets[0].getsockname()[1]
    finally:
        listening.close()
        for task in pipes:
            task.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)


async def test_https_proxy_tunnels_a_run_to_an_https_server(
    tmp_path: Path, proxy: ProxyProcess, sim: RunningSimulator
) -> None:
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    async with tls_front(sim.port, context) as port:
        args = run_args(tmp_path, f"https://127.0.0.1:{port}/v1")
        env = cli_env(HTTPS_PROXY=proxy.url(), OPENAI_API_KEY="sk-test", SSL_CERT_FILE=str(ca_file))
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "llmgather", *args, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, stderr = await asyncio.wait_for(child.communicate(), 50)
    assert child.returncode == 0, stderr.decode()
    assert [line["status"] for line in read_jsonl(tmp_path / "out.jsonl")] == ["ok"] * 3
    assert sim.handler.stats.received == 3
    assert await asyncio.to_thread(proxy.wait_for, f"CONNECT 127.0.0.1:{port}")


# -- the library ------------------------------------------------------------------------------


async def test_the_client_honours_the_proxy_variables_unless_trust_env_is_false(
    sim: RunningSimulator,
    closed_port: Callable[[], int],
) -> None:
    dead = closed_port()
    env = {"OPENAI_API_KEY": "sk-test", "HTTP_PROXY": f"http://user:{WRONG}@127.0.0.1:{dead}"}
    base_url = sim.base_url + "/v1"
    async with Client("openai:gpt-4o-mini", base_url=base_url, env=env, retry=ONCE) as client:
        with pytest.raises(APIConnectionError) as failure:
            await client.complete("hello")
    assert f"cannot connect to the proxy 127.0.0.1:{dead} (from HTTP_PROXY)" in str(failure.value)
    assert WRONG not in str(failure.value)
    async with Client(
        "openai:gpt-4o-mini", base_url=base_url, env=env, retry=ONCE, trust_env=False
    ) as client:
        assert await client.complete("hello")


async def test_the_built_in_simulator_is_reached_directly_whatever_the_proxy(
    closed_port: Callable[[], int],
) -> None:
    env = {"HTTP_PROXY": f"http://127.0.0.1:{closed_port()}", "HTTPS_PROXY": "socks5://x:1"}
    async with Client("sim:gpt-4o-mini", env=env, retry=ONCE) as client:
        assert await client.complete("hello")


async def test_serve_reaches_its_upstream_through_the_proxy(
    tmp_path: Path, proxy: ProxyProcess, sim: RunningSimulator
) -> None:
    base_url = sim.base_url + "/v1"
    args = ("--model", "openai:gpt-4o-mini", "--base-url", base_url)
    async with served_by_cli(tmp_path, *args, HTTP_PROXY=proxy.url(), OPENAI_API_KEY="sk-t") as s:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        request = urllib.request.Request(
            s.url + "/v1/chat/completions",
            data=orjson.dumps(body),
            headers={"content-type": "application/json"},
        )
        answer = await asyncio.to_thread(urllib.request.urlopen, request, timeout=30)
        assert orjson.loads(answer.read())["choices"][0]["message"]["content"]
    forwarded = await asyncio.to_thread(
        proxy.wait_for, f"POST 127.0.0.1:{sim.port}/v1/chat/completions"
    )
    assert forwarded
