"""Resume by line: a rerun on an edited input sends what changed and nothing else.

Each item is known by its id and what is sent for it, so fixing a bad line, appending lines or
fixing a wrong `--base-url` costs exactly those requests, counted at the simulator; an edit of
a line that has a result is refused (nothing sent) unless `--resend-changed`.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from llmgather.sim import EmbeddedSimulator, SimConfig
from tests.clihelpers import read_jsonl, run_cli


def prompts_file(path: Path, ids: range, *, bad: int | None = None) -> Path:
    lines = [
        b"{not json" if n == bad else orjson.dumps({"id": f"q{n}", "prompt": f"Question {n}?"})
        for n in ids
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def sim_args(sim: EmbeddedSimulator, prompts: Path, out: Path, *extra: str) -> list[str]:
    return [
        "run", str(prompts), "-o", str(out), "--model", "openai:gpt-4o-mini",
        "--base-url", sim.base_url + "/v1", "--api-key", "k", "--quiet", "--json",
        "--concurrency", "64", *extra,
    ]  # fmt: skip


def summary_of(run: object) -> dict:
    stdout = run.stdout  # type: ignore[attr-defined]
    return orjson.loads(stdout.strip().splitlines()[-1])


def test_fixing_one_bad_line_of_a_10000_line_job_sends_exactly_one_request(
    tmp_path: Path,
) -> None:
    prompts = prompts_file(tmp_path / "in.jsonl", range(1, 10_001), bad=4_321)
    out = tmp_path / "out.jsonl"
    with EmbeddedSimulator(SimConfig(seed=1)) as sim:
        first = run_cli(*sim_args(sim, prompts, out), timeout=300)
        assert first.returncode == 1, first.stderr
        assert summary_of(first)["invalid"] == 1
        hint = summary_of(first)["hint"]
        assert "fix it in the input and rerun the same command" in hint, hint
        before = sim.stats["received"]
        assert before == 9_999

        text = prompts.read_bytes().replace(b"{not json", b'{"id": "q4321", "prompt": "Fixed?"}')
        prompts.write_bytes(text)
        fixed = run_cli(*sim_args(sim, prompts, out), timeout=300)
        assert fixed.returncode == 0, fixed.stderr
        assert sim.stats["received"] - before == 1
    summary = summary_of(fixed)
    assert (summary["ok"], summary["invalid"], summary["sent"]) == (10_000, 0, 1)
    assert summary["changes"] == ["1 item fixed (invalid before)"]
    lines = read_jsonl(out)
    assert len(lines) == 10_000 and lines[4_320]["id"] == "q4321"
    assert all(line["status"] == "ok" for line in lines)


def test_appending_100_lines_sends_exactly_100_and_keeps_the_rest(tmp_path: Path) -> None:
    prompts = prompts_file(tmp_path / "in.jsonl", range(1, 301))
    out = tmp_path / "out.jsonl"
    with EmbeddedSimulator(SimConfig(seed=2)) as sim:
        assert run_cli(*sim_args(sim, prompts, out)).returncode == 0
        answers = {line["id"]: line["text"] for line in read_jsonl(out)}
        prompts_file(tmp_path / "more.jsonl", range(301, 401))
        prompts.write_bytes(prompts.read_bytes() + (tmp_path / "more.jsonl").read_bytes())
        before = sim.stats["received"]
        again = run_cli(*sim_args(sim, prompts, out))
        assert again.returncode == 0, again.stderr
        assert sim.stats["received"] - before == 100
    assert summary_of(again)["changes"] == ["100 items new in the input"]
    lines = read_jsonl(out)
    assert [line["id"] for line in lines] == [f"q{n}" for n in range(1, 401)]
    assert all(answers[line["id"]] == line["text"] for line in lines[:300])  # not sent again


def test_a_fixed_base_url_with_retry_failed_sends_exactly_the_failed_items(
    tmp_path: Path,
) -> None:
    prompts = prompts_file(tmp_path / "in.jsonl", range(1, 31))
    out = tmp_path / "out.jsonl"
    with EmbeddedSimulator(SimConfig(seed=3)) as sim:
        assert run_cli(*sim_args(sim, prompts, out)).returncode == 0
        prompts_file(tmp_path / "more.jsonl", range(31, 41))
        prompts.write_bytes(prompts.read_bytes() + (tmp_path / "more.jsonl").read_bytes())
        # A wrong path: every new item fails with a 404, the 30 done are untouched.
        wrong = run_cli(*sim_args(sim, prompts, out, "--base-url", sim.base_url + "/nowhere"))
        assert wrong.returncode == 1, wrong.stderr
        assert summary_of(wrong)["failed"] == 10
        assert "--retry-failed to send those 10 again." in summary_of(wrong)["hint"]
        before = sim.stats["received"]
        # The fixed URL alone sends nothing (failed items wait for --retry-failed) and says
        # what changed; with --retry-failed it sends exactly the 10.
        fixed_url = run_cli(*sim_args(sim, prompts, out))
        assert sim.stats["received"] == before
        retried = run_cli(*sim_args(sim, prompts, out, "--retry-failed"))
        assert retried.returncode == 0, retried.stderr
        assert sim.stats["received"] - before == 10
    assert fixed_url.returncode == 1, fixed_url.stderr
    [change] = summary_of(fixed_url)["changes"]
    assert change.startswith("base URL changed from") and "/nowhere" in change
    assert summary_of(retried)["ok"] == 40


def test_a_changed_line_with_a_result_is_refused_unless_resend_changed(tmp_path: Path) -> None:
    prompts = prompts_file(tmp_path / "in.jsonl", range(1, 21))
    out = tmp_path / "out.jsonl"
    with EmbeddedSimulator(SimConfig(seed=4)) as sim:
        assert run_cli(*sim_args(sim, prompts, out)).returncode == 0
        first_output = out.read_bytes()
        edited = prompts.read_bytes().replace(b"Question 5?", b"Question five?")
        prompts.write_bytes(edited.replace(b"Question 9?", b"Question nine?"))
        before = sim.stats["received"]
        refused = run_cli(*sim_args(sim, prompts, out))
        assert sim.stats["received"] == before
        # Nothing changed: the output, and the job's state.
        assert out.read_bytes() == first_output
        status = orjson.loads(run_cli("status", str(out), "--json").stdout)
        assert (status["state"], status["done"]) == ("complete", 20)
        resent = run_cli(*sim_args(sim, prompts, out, "--resend-changed"))
        assert resent.returncode == 0, resent.stderr
        assert sim.stats["received"] - before == 2
    assert refused.returncode == 2
    assert "2 items of" in refused.stderr and "'q5' (line 5), 'q9' (line 9)" in refused.stderr
    assert "Nothing was sent" in refused.stderr and "--resend-changed" in refused.stderr
    assert summary_of(resent)["changes"] == ["2 items changed, sent again"]


def test_ids_that_disappear_leave_the_output_and_come_back_with_their_results(
    tmp_path: Path,
) -> None:
    prompts = prompts_file(tmp_path / "in.jsonl", range(1, 11))
    full = prompts.read_bytes()
    out = tmp_path / "out.jsonl"
    with EmbeddedSimulator(SimConfig(seed=5)) as sim:
        assert run_cli(*sim_args(sim, prompts, out)).returncode == 0
        answers = {line["id"]: line["text"] for line in read_jsonl(out)}
        # Lines 3 and 4 removed, line 10 moved first: lines shift, ids do not.
        kept = full.splitlines()
        prompts.write_bytes(b"\n".join([kept[9], *kept[:2], *kept[4:9]]) + b"\n")
        before = sim.stats["received"]
        fewer = run_cli(*sim_args(sim, prompts, out))
        prompts.write_bytes(full)
        back = run_cli(*sim_args(sim, prompts, out))
        assert sim.stats["received"] == before
    assert fewer.returncode == 0, fewer.stderr
    assert summary_of(fewer)["changes"] == [
        "2 items no longer in the input (results kept in the job store)"
    ]
    assert back.returncode == 0, back.stderr
    lines = read_jsonl(out)
    assert [line["id"] for line in lines] == [f"q{n}" for n in range(1, 11)]
    assert all(answers[line["id"]] == line["text"] for line in lines)


def test_a_parameter_that_decides_the_answers_still_needs_restart(tmp_path: Path) -> None:
    prompts = prompts_file(tmp_path / "in.jsonl", range(1, 6))
    out = tmp_path / "out.jsonl"
    with EmbeddedSimulator(SimConfig(seed=6)) as sim:
        assert run_cli(*sim_args(sim, prompts, out)).returncode == 0
        other = run_cli(*sim_args(sim, prompts, out, "--temperature", "0.5"))
    assert other.returncode == 2
    assert "parameter 'temperature' was unset now 0.5" in other.stderr
    assert "--restart" in other.stderr


def test_the_readme_workflow_fix_the_bad_lines_and_rerun(tmp_path: Path) -> None:
    """As the README tells it: the embedded simulator, no flags; bad lines become error
    lines, the rest runs; fix them and rerun the same command: only they are sent."""
    prompts = prompts_file(tmp_path / "prompts.jsonl", range(1, 41), bad=17)
    out = tmp_path / "results.jsonl"
    command = ("run", str(prompts), "-o", str(out), "--json")
    first = run_cli(*command)
    assert first.returncode == 1, first.stderr
    prompts.write_bytes(prompts.read_bytes().replace(b"{not json", b'{"prompt": "Fixed?"}'))
    again = run_cli(*command)
    assert again.returncode == 0, again.stderr
    assert (summary_of(again)["sent"], summary_of(again)["ok"]) == (1, 40)
    assert read_jsonl(out)[16]["id"] == "17"
