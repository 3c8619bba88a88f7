"""The README's library example runs as pasted, with no API key, against the simulator."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from llmgather.sim import SimConfig, answer_text
from tests.clihelpers import cli_env

README = Path(__file__).resolve().parent.parent / "README.md"


def library_example() -> str:
    section = README.read_text().split("\n## The library\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```python\n(.*?)^```$", section, flags=re.MULTILINE | re.DOTALL)
    assert blocks, "the library section should open with a python example"
    return blocks[0]


def test_the_readme_library_example_runs_as_pasted_on_the_simulator(tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(library_example())
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env=cli_env(),  # no provider key, whatever the developer's shell exports
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "simulator" in done.stderr  # it says where the answers come from
    # The simulator's own answer to the example's first question, then every result ok.
    first = answer_text("Why do some birds migrate?", seed=SimConfig().seed)[0]
    assert done.stdout.splitlines()[0] == first
    assert done.stdout.count("ok") >= 20, done.stdout
