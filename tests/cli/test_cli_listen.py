"""`sim` and `serve` on a port already in use: one clear line and exit 2, never a traceback."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.clihelpers import run_cli


@pytest.fixture
def port_in_use() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        yield taken.getsockname()[1]


@pytest.mark.parametrize("command", ["sim", "serve"])
def test_a_port_in_use_is_said_in_one_line(port_in_use: int, command: str) -> None:
    done = run_cli(command, "--port", str(port_in_use), timeout=60)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        f"error: cannot listen on 127.0.0.1:{port_in_use}: Address already in use"
    )
