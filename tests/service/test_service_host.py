"""Which `--host` needs a token: every loopback address (127.0.0.0/8, ::1, localhost) serves
without one, anything else is refused without one, and an empty host is refused as empty."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from llmgather._errors import ConfigurationError
from llmgather.service import ServiceSettings
from tests.clihelpers import run_cli
from tests.servicefixtures import served_by_cli


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.0.0.2", "127.1.2.3", "127.255.255.254", "::1", "localhost"]
)
def test_every_loopback_host_serves_without_a_token(host: str) -> None:
    assert ServiceSettings(host=host).host == host


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "128.0.0.1", "example.com"])
def test_other_hosts_need_a_token(host: str) -> None:
    with pytest.raises(ConfigurationError, match="bearer token"):
        ServiceSettings(host=host)
    assert ServiceSettings(host=host, token="t").token == "t"


async def test_serve_on_another_loopback_address_starts_without_a_token(tmp_path: Path) -> None:
    async with (
        served_by_cli(tmp_path, "--host", "127.0.0.2") as served,
        aiohttp.ClientSession() as http,
    ):
        assert served.url.startswith("http://127.0.0.2:")
        async with http.get(served.url + "/healthz") as response:
            assert response.status == 200


def test_serve_refuses_an_empty_host_saying_so(tmp_path: Path) -> None:
    done = run_cli("serve", "--host", "", "--port", "0", "--jobs-dir", str(tmp_path), timeout=30)
    assert done.returncode == 2
    assert "the host to serve on is empty" in done.stderr
    assert "serving on  would" not in done.stderr
