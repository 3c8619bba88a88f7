"""A port the tests use as one that refuses connections stays so for the whole test: held
bound, so a server another test process starts on port 0 (or binds with SO_REUSEADDR, as
uvicorn and aiohttp do) cannot take it in between, and a "refused" connection never reaches a
stranger's server under xdist."""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable

import pytest


@pytest.mark.parametrize("reuse_address", [False, True])
def test_a_closed_port_cannot_be_taken_while_the_test_runs(
    closed_port: Callable[[], int], reuse_address: bool
) -> None:
    port = closed_port()
    with socket.socket() as stranger:
        if reuse_address:
            stranger.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with pytest.raises(OSError) as taken:
            stranger.bind(("127.0.0.1", port))
    assert taken.value.errno == errno.EADDRINUSE


def test_a_closed_port_refuses_connections(closed_port: Callable[[], int]) -> None:
    first, second = closed_port(), closed_port()
    assert first != second
    for port in (first, second):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
