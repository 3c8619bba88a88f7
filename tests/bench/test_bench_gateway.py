"""Smoke test of `llmgather bench gateway`: a tiny run of the direct call and `llmgather serve`
(the LiteLLM proxy is too slow to start for the suite), through the real subprocesses, checking
the rows, the table and the JSON it writes: not the timings."""

from __future__ import annotations

import dataclasses
import json
import urllib.request
from pathlib import Path

import pytest

from llmgather.bench import _bare_relay, _litellm, _report, gateway
from llmgather.bench._config import QUICK
from llmgather.cli import bench as bench_cli
from llmgather.sim import EmbeddedSimulator

TINY = gateway.GatewaySizes(
    latency_requests=20,
    latency_warmup=2,
    rate_s=0.3,
    rate_warmup_s=0.1,
    shared_clients=20,
    shared_rpm=1200.0,
    shared_requests=20,  # 1 s at 1,200 RPM
    acceptance_rpm=6000.0,
    acceptance_requests=40,  # 0.4 s at 6,000 RPM
)


@pytest.mark.quiet
@pytest.mark.timeout(60)
def test_tiny_gateway_run_has_the_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(gateway, "QUICK", TINY)
    config = dataclasses.replace(QUICK, repeat=1)
    summary = bench_cli.run_bench(["gateway"], config, tmp_path, charts=False, only={gateway.OURS})
    rows = {row["name"]: row for row in summary["gateway"]}
    assert set(rows) == {gateway.DIRECT, gateway.OURS}
    for row in rows.values():
        assert "error" not in row, row
        assert row["p50_ms"] > 0 and row["rps_c64"] > 0 and row["rps_c256"] > 0
        assert row["shared_ok"] + row["shared_429"] + row["shared_failed"] == 20
    assert rows[gateway.DIRECT]["added_p50_ms"] == 0
    assert rows[gateway.DIRECT]["ratio_c64"] == 1.0
    # Told the limit, the gateway queues instead of passing the simulator's 429s on.
    assert rows[gateway.OURS]["shared_ok"] == 20 and rows[gateway.OURS]["shared_429"] == 0
    written = json.loads((tmp_path / "gateway.json").read_text())
    assert written["acceptance"]["requests"] == 40
    assert written["acceptance"]["ok"] + written["acceptance"]["failed"] <= 40
    assert {t["what"] for t in written["targets"]} >= {"added p50 at c=1, ms"}
    out = capsys.readouterr().out
    assert "◆ llmgather serve" in out and "direct (no gateway)" in out
    assert "target added p50 at c=1, ms" in out
    assert "sim-key" not in out


def test_a_missing_litellm_is_a_row_that_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LLMGATHER_LITELLM", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(_litellm.sys, "executable", str(tmp_path / "python"))
    with pytest.raises(gateway.GatewayUnavailable, match=r"pip install 'llmgather\[bench\]'"):
        _litellm.litellm_proxy("http://127.0.0.1:9/v1", tmp_path)
    rows = [{"name": gateway.DIRECT, "p50_ms": 0.5}, {"name": _litellm.NAME, "error": "missing"}]
    assert "LiteLLM proxy [missing]" in _report.table("gateway", rows)


def test_litellm_config_turns_retries_off_and_carries_the_limit() -> None:
    config = _litellm.config("http://127.0.0.1:9/v1", rpm=600)
    params = config["model_list"][0]["litellm_params"]
    assert params["rpm"] == 600 and params["max_retries"] == 0
    assert config["router_settings"]["num_retries"] == 0
    assert config["litellm_settings"]["num_retries"] == 0
    assert "rpm" not in _litellm.config("http://127.0.0.1:9/v1")["model_list"][0]["litellm_params"]


def test_pct_of_ceiling_charges_a_fast_failure_the_whole_ceiling() -> None:
    assert gateway.pct_of_ceiling(2000, 2000, 20.0, 20.0) == pytest.approx(100.0)
    assert gateway.pct_of_ceiling(2000, 2000, 21.0, 20.0) == pytest.approx(95.24, abs=0.01)
    assert gateway.pct_of_ceiling(100, 200, 1.0, 20.0) == pytest.approx(50.0)


def test_the_bare_relay_answers_with_the_upstreams_bytes(
    threaded_sim: EmbeddedSimulator, tmp_path: Path
) -> None:
    body = json.dumps(
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    ).encode()
    with _bare_relay.bare_relay(threaded_sim.base_url + "/v1", tmp_path) as relay:
        request = urllib.request.Request(
            relay.base_url + "/chat/completions", data=body, method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # 127.0.0.1
            answer = json.loads(response.read())
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["content"]
