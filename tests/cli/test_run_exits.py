"""How `llmgather run` ends on each path: what it leaves behind, what `--json` prints."""

from __future__ import annotations

from pathlib import Path

from tests.clihelpers import run_cli, write_prompts


def test_a_strict_refusal_leaves_no_job_store(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 3)
    with prompts.open("ab") as f:
        f.write(b"not json\n")
    out = tmp_path / "out.jsonl"
    refused = run_cli("run", str(prompts), "-o", str(out), "--strict", "--quiet")
    assert refused.returncode == 3, refused.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prompts.jsonl"]
    # Standard input, spooled beside the output to be read twice, leaves no spool either.
    piped = run_cli("run", "-", "-o", str(out), "--strict", stdin=prompts.read_bytes())
    assert piped.returncode == 3, piped.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prompts.jsonl"]
