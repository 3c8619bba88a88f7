"""Every number option of every command refuses NaN and infinity with click's usage error (exit
2), where click's FloatRange let NaN through: `--temperature nan` went out as null, and
`sim --rpm nan` died in a traceback."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from llmgather.cli import main
from tests.clihelpers import run_cli, write_prompts


def number_options() -> list[tuple[str, str]]:
    """(command, flag) of every option whose values are numbers with a fraction."""
    found = []
    for name, command in sorted(main.commands.items()):
        for param in command.params:
            if isinstance(param, click.Option) and isinstance(param.type, click.FloatRange):
                found.append((name, param.opts[-1]))
    return found


def test_every_number_option_of_every_command_is_a_finite_float() -> None:
    from llmgather.cli._options import FiniteFloat

    options = number_options()
    # The ones the defect was met with, so the walk above cannot find nothing and pass.
    assert {("run", "--temperature"), ("sim", "--rpm"), ("serve", "--queue-timeout")} <= set(
        options
    )
    not_finite = [
        f"{name} {flag}"
        for name, command in main.commands.items()
        for param in command.params
        if isinstance(param.type, click.FloatRange) and not isinstance(param.type, FiniteFloat)
        for flag in param.opts[-1:]
    ]
    assert not_finite == []


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "infinity"])
def test_run_refuses_a_temperature_that_is_not_a_finite_number(tmp_path: Path, value: str) -> None:
    prompts = write_prompts(tmp_path / "p.jsonl", 2)
    out = tmp_path / "out.jsonl"
    done = run_cli("run", str(prompts), "-o", str(out), f"--temperature={value}", timeout=60)
    assert done.returncode == 2, done.stderr
    assert "Invalid value for '--temperature'" in done.stderr
    assert "give one with 0<=x<=2" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()  # nothing was sent


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["sim", "--port", "0", "--rpm", "nan"], "--rpm"),
        (["sim", "--port", "0", "--latency-ms", "nan"], "--latency-ms"),
        (["sim", "--port", "0", "--tpm", "inf"], "--tpm"),
        (["serve", "--port", "0", "--queue-timeout", "nan"], "--queue-timeout"),
        (["serve", "--port", "0", "--timeout", "nan"], "--timeout"),
        (["worker", "--queue", "redis://127.0.0.1:1/0", "--idle-exit", "nan"], "--idle-exit"),
        (["worker", "--queue", "redis://127.0.0.1:1/0", "--rpm", "inf"], "--rpm"),
    ],
)
def test_sim_serve_and_worker_refuse_nan_and_infinity_before_starting(
    args: list[str], flag: str
) -> None:
    done = run_cli(*args, timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"Invalid value for '{flag}'" in done.stderr
    assert "not a number" in done.stderr or "not a finite number" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_finite_number_still_passes_with_its_range_checked() -> None:
    from llmgather.cli._options import FiniteFloat

    positive = FiniteFloat(min=0, min_open=True)
    assert positive.convert("2.5", None, None) == 2.5
    with pytest.raises(click.BadParameter, match=r"0\.0 is not in the range x>0"):
        positive.convert("0", None, None)
    with pytest.raises(click.BadParameter, match="'nan' is not a number: give one with x>0"):
        positive.convert("nan", None, None)
    with pytest.raises(click.BadParameter, match="is not a finite number"):
        positive.convert(float("inf"), None, None)
