"""What the CLI prints is the text it means: rich's emoji codes (`:gemini:` → ♊) never rewrite
a model name, a file name or a server's message."""

from __future__ import annotations

import re
from pathlib import Path

import llmgather
from tests.clihelpers import run_cli, write_prompts

SRC = Path(llmgather.__file__).parent


def test_the_suggested_simulator_model_prints_as_it_must_be_typed(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "p.jsonl", 1)
    done = run_cli(
        "run", str(prompts), "-o", str(tmp_path / "out.jsonl"), "-m", "gemini:gemini-2.0-flash",
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "use sim:gemini:gemini-2.0-flash for the built-in simulator" in done.stderr
    assert "♊" not in done.stderr


def test_a_file_name_with_emoji_codes_stays_as_it_is(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "p.jsonl", 1)
    output = tmp_path / "a:smile:b:rocket:.jsonl"  # the summary names it
    done = run_cli("run", str(prompts), "-o", str(output), timeout=60)
    assert done.returncode == 0, done.stderr
    assert "a:smile:b:rocket:.jsonl" in done.stderr
    assert "😄" not in done.stderr and "🚀" not in done.stderr


def test_every_console_the_cli_makes_comes_from_the_one_factory() -> None:
    made = [
        f"{path.relative_to(SRC)}:{n}"
        for path in sorted(SRC.rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\bConsole\(", line)
    ]
    assert made == ["cli/_console.py:18"], made
