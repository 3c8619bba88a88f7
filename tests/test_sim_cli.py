"""The `llmgather sim` command's options, checked without serving."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import llmgather.sim.server
from llmgather.cli.sim import sim_command
from llmgather.sim import SimConfig


def test_help_lists_the_options_and_endpoints() -> None:
    result = CliRunner().invoke(sim_command, ["--help"])
    assert result.exit_code == 0
    for option in (
        "--host",
        "--port",
        "--rpm",
        "--tpm",
        "--latency-ms",
        "--faults",
        "--require-key",
        "--seed",
        "--stall-s",
        "--fault-retry-after",
        "--capacity",
    ):
        assert option in result.output
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
    monkeypatch.setattr(
        llmgather.sim.server,
        "run_forever",
        lambda config, host, port: seen.append((config, host, port)),
    )
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
            "--latency-ms",
            "0",
            "--seed",
            "4",
            "--faults",
            "500=0.1,cut=0.2",
            "--stall-s",
            "2",
            "--fault-retry-after",
            "3",
            "--capacity",
            "8",
        ],
    )
    assert result.exit_code == 0, result.output
    config, host, port = seen[0]
    assert (host, port) == ("127.0.0.1", 0)
    assert config.rpm == 60 and config.tpm == 1000 and config.latency_ms == 0
    assert config.seed == 4 and config.stall_s == 2 and config.fault_retry_after_s == 3
    assert config.capacity == 8 and config.require_key == "from-env"
    assert dict(config.faults.rates) == {"500": 0.1, "cut": 0.2}
