"""`llmgather status` as a person reads it: the table at a narrow terminal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.clihelpers import cli_env, run_cli, write_prompts


def test_a_long_output_path_is_never_broken_mid_name(tmp_path: Path) -> None:
    folder = tmp_path / ("a-folder-with-a-long-name-" * 3)
    folder.mkdir()
    prompts = write_prompts(folder / "prompts.jsonl", 2)
    out = folder / "results[1]-of-the-run.jsonl"
    assert run_cli("run", str(prompts), "-o", str(out), "--quiet").returncode == 0
    env = cli_env()
    env["COLUMNS"] = "40"
    shown = subprocess.run(
        [sys.executable, "-m", "llmgather", "status", str(out)],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert f"llmgather job → {out}\n" in shown.stdout
    assert "items" in shown.stdout and "done" in shown.stdout
