"""The servers the tests and benchmarks start choose a free port, and another process may take
it before the server binds it (pytest-xdist runs several at once): made to happen here on
purpose, by handing out a port that is already taken."""

from __future__ import annotations

import itertools
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from llmgather.bench import _bare_relay, _servers, redis_server
from llmgather.bench.redis_server import RedisServer
from llmgather.sim import EmbeddedSimulator


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another process holds (listening, never answering)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def handing_out_first(port: int) -> Callable[[], int]:
    """A `free_port` whose first answer is `port` (taken meanwhile), then free ones."""
    real = redis_server.free_port
    ports = itertools.chain([port], iter(real, None))
    return lambda: next(ports)


def served_by(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return int(client.info("server")["process_id"])
    finally:
        client.close()


def test_a_redis_server_whose_port_was_taken_starts_on_another(
    tmp_path: Path, taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_server, "free_port", handing_out_first(taken_port))
    with RedisServer(tmp_path / "redis") as server:
        assert server.port != taken_port
        assert server.process is not None and served_by(server.url) == server.process.pid


def test_a_redis_server_is_not_mistaken_for_another_on_its_port(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another Redis took the port first: it answers PING, but it is not this one."""
    other = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    monkeypatch.setattr(redis_server, "free_port", handing_out_first(other))
    with RedisServer(tmp_path / "redis") as server:
        assert server.process is not None and served_by(server.url) == server.process.pid
        server.restart()  # on its own port still
        assert served_by(server.url) == server.process.pid


def test_a_gateway_whose_port_was_taken_starts_on_another(
    tmp_path: Path,
    taken_port: int,
    threaded_sim: EmbeddedSimulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handed_out = handing_out_first(taken_port)
    for module in (_servers, _bare_relay):  # whichever chooses the port
        monkeypatch.setattr(module, "free_port", handed_out, raising=False)
    with _bare_relay.bare_relay(threaded_sim.base_url + "/v1", tmp_path) as relay:
        assert relay.port != taken_port
        answer = httpx.get(f"http://127.0.0.1:{relay.port}/readyz", timeout=10)
        assert answer.status_code == 200
