"""The `llmgather sim` command's options, checked without serving, and once as a process."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from click.testing import CliRunner

import llmgather.sim.server
from llmgather.cli.sim import sim_command
from llmgather.sim import SimConfig
from tests.clihelpers import cli_env


def test_help_lists_the_options_and_endpoints() -> None:
    result = CliRunner().invoke(sim_command, ["--help"])
    assert result.exit_code == 0
    for option in (
        "--host",
        "--port",
        "--rpm",
        "--rpd",
        "--tpm",
        "--itpm",
        "--otpm",
        "--latency-ms",
        "--faults",
        "--require-key",
        "--seed",
        "--stall-s",
        "--fault-retry-after",
        "--capacity",
        "--no-limit-headers",
    ):
        assert option in result.output
    assert "POST /_sim/limits" in result.output
    assert "/v1/chat/completions" in result.output and "500.0" in result.output


@pytest.mark.parametrize("spec", ["500=0.1,bogus=0.2", "reset=lots", "500=0.7,503=0.7"])
def test_bad_faults_are_a_bad_parameter(spec: str) -> None:
    result = CliRunner().invoke(sim_command, ["--faults", spec])
    assert result.exit_code == 2
    assert "--faults" in result.output
    bad = spec.split(",")[1] if "bogus" in spec else ("lots" if "lots" in spec else "more than 1")
    assert bad in result.output


def test_options_become_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[SimConfig, str, int]] = []

    def run_forever(config: SimConfig, host: str, port: int, *, sock: socket.socket) -> None:
        sock.close()  # bound by the command, before serving
        seen.append((config, host, port))

    monkeypatch.setattr(llmgather.sim.server, "run_forever", run_forever)
    monkeypatch.setenv("LLMGATHER_SIM_KEY", "from-env")
    result = CliRunner().invoke(
        sim_command,
        [
            "--port",
            "0",
            "--rpm",
            "60",
            "--tpm",
            "1000",
            "--rpd",
            "500",
            "--itpm",
            "4000",
            "--otpm",
            "800",
            "--latency-ms",
            "0",
            "--seed",
            "4",
            "--faults",
            "500=0.1,cut=0.2,preempt=1",
            "--stall-s",
            "2",
            "--fault-retry-after",
            "3",
            "--capacity",
            "8",
            "--no-limit-headers",
        ],
    )
    assert result.exit_code == 0, result.output
    config, host, port = seen[0]
    assert (host, port) == ("127.0.0.1", 0)
    assert config.rpm == 60 and config.tpm == 1000 and config.latency_ms == 0
    assert config.rpd == 500 and config.itpm == 4000 and config.otpm == 800
    assert config.seed == 4 and config.stall_s == 2 and config.fault_retry_after_s == 3
    assert config.capacity == 8 and config.require_key == "from-env"
    assert config.limit_headers is False
    assert dict(config.faults.rates) == {"500": 0.1, "cut": 0.2, "preempt": 1.0}


def test_the_served_command_enforces_requests_per_day() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "llmgather", "sim", "--port", "0", "--rpd", "1",
         "--latency-ms", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        base_url = line.split(" listening on ")[1].split()[0]
        statuses, bodies = [], []
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no env proxy
        for _ in range(2):
            request = urllib.request.Request(
                base_url + "/v1/chat/completions",
                data=json.dumps(
                    {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
                ).encode(),
                headers={"Content-Type": "application/json", "Authorization": "Bearer k"},
            )
            try:
                with direct.open(request, timeout=10) as response:
                    statuses.append(response.status)
            except urllib.error.HTTPError as exc:
                statuses.append(exc.code)
                bodies.append(json.loads(exc.read())["error"]["message"])
    finally:
        process.terminate()
        process.communicate(timeout=10)
    assert statuses == [200, 429]
    assert "on requests per day (RPD): Limit 1, Used 1, Requested 1." in bodies[0]
