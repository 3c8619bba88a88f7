"""Durable jobs through the real CLI: kills, Ctrl-C, resume, bad input, Batch API files."""

from __future__ import annotations

import os
import pty
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from llmgather._errors import DuplicateIdError
from llmgather.jobs.job import Job
from llmgather.jobs.options import InputOptions, JobOptions
from llmgather.jobs.store import SQLiteJobStore, store_path_for
from llmgather.sim import EmbeddedSimulator, SimConfig
from tests.cli.runprocess import CONCURRENCY, run_args, start, wait_for_progress
from tests.clihelpers import cli_env, read_jsonl, run_cli, write_prompts


def test_sigkill_three_times_then_resume_loses_nothing_and_repeats_little(tmp_path: Path) -> None:
    n = 1500
    prompts = write_prompts(tmp_path / "prompts.jsonl", n)
    out = tmp_path / "results.jsonl"
    rng = random.Random(11)
    with EmbeddedSimulator(SimConfig(latency_ms=60, seed=9)) as sim:
        args = run_args(sim, prompts, out)
        for kill in range(3):
            process = start(args)
            wait_for_progress(out, at_least=100 * (kill + 1))
            time.sleep(rng.uniform(0.0, 0.4))
            process.send_signal(signal.SIGKILL)
            process.communicate(timeout=10)
        finished = subprocess.run(
            [sys.executable, "-m", "llmgather", *args],
            capture_output=True,
            text=True,
            env=cli_env(),
            timeout=120,
        )
        received = sim.stats["received"]
    assert finished.returncode == 0, finished.stderr
    lines = read_jsonl(out)
    ids = [line["id"] for line in lines]
    assert len(ids) == n and len(set(ids)) == n
    assert set(ids) == {f"q{i}" for i in range(n)}
    assert all(line["status"] == "ok" for line in lines)
    # Each kill can repeat what was in flight (the concurrency) plus the few results that had
    # arrived while the previous transaction was being written.
    assert received <= n + 3 * (CONCURRENCY + 4), received


def test_sigint_finishes_what_is_in_flight_and_the_rerun_completes(tmp_path: Path) -> None:
    n = 600
    prompts = write_prompts(tmp_path / "prompts.jsonl", n)
    out = tmp_path / "results.jsonl"
    with EmbeddedSimulator(SimConfig(latency_ms=80, seed=9)) as sim:
        args = run_args(sim, prompts, out)
        process = start(args)
        wait_for_progress(out, at_least=50)
        sent_before = sim.stats["received"]
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 130, stderr
        # Nothing queued behind the requests on the wire went out after the signal (the
        # margin is what may start between reading the count and the signal's delivery).
        assert sim.stats["received"] <= sent_before + 2 * CONCURRENCY
        assert "Rerun the same command to resume" in stderr
        partial = read_jsonl(out)
        assert 50 <= len(partial) < n
        status = run_cli("status", str(out), "--json")
        assert orjson.loads(status.stdout)["pending"] == n - len(partial)
        finished = run_cli(*args)
        received = sim.stats["received"]
    assert finished.returncode == 0, finished.stderr
    assert sorted(line["id"] for line in read_jsonl(out)) == sorted(f"q{i}" for i in range(n))
    assert received == n  # graceful: what was in flight finished and was not sent again


def test_sigint_after_the_last_request_left_lets_the_job_finish_complete(tmp_path: Path) -> None:
    n = 8
    prompts = write_prompts(tmp_path / "prompts.jsonl", n)
    out = tmp_path / "results.jsonl"
    with EmbeddedSimulator(SimConfig(latency_ms=1500, latency_jitter=0, seed=9)) as sim:
        process = start(run_args(sim, prompts, out))
        deadline = time.monotonic() + 20
        while sim.stats["received"] < n and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    # Nothing was left to send and what was in flight finished within the grace period.
    assert process.returncode == 0, stderr
    assert len(read_jsonl(out)) == n
    status = orjson.loads(run_cli("status", str(out), "--json").stdout)
    assert status["pending"] == 0 and status["state"] == "complete"


def bad_lines() -> list[tuple[bytes, str]]:
    """(line, what its error must mention) for each kind of bad input, twice."""
    return bad_kinds("a") + bad_kinds("b")


def bad_kinds(tag: str) -> list[tuple[bytes, str]]:
    return [
        (b'{"prompt": "unterminated', "JSON"),
        (b'{"prompt": 42}', '"prompt"'),
        (b'{"id": "m-' + tag.encode() + b'", "text": "no prompt field"}', "prompt"),
        (b'{"prompt": "bad bytes \xff\xfe here"}', "UTF-8"),
        (b"", "empty"),
        (b'{"prompt": "' + b"x" * 1_200_000 + b'"}', "bytes"),
        (b'{"messages": "not a list"}', "messages"),
        (b'{"prompt": "ok", "max_tokens": "ten"}', "max_tokens"),
        (b'["a", "list"]', "object"),
        (b'{"prompt": "ok", "temperature": "hot"}', "temperature"),
    ]


def mixed_file(path: Path, good: int) -> tuple[Path, dict[int, str]]:
    lines: list[bytes] = []
    expected: dict[int, str] = {}
    bad = bad_lines()
    step = good // len(bad)
    g = 0
    for i, (line, mention) in enumerate(bad):
        for _ in range(step):
            lines.append(orjson.dumps({"id": f"g{g}", "prompt": f"good {g}"}))
            g += 1
        lines.append(line)
        expected[len(lines)] = mention
        del i
    while g < good:
        lines.append(orjson.dumps({"id": f"g{g}", "prompt": f"good {g}"}))
        g += 1
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, expected


def test_bad_lines_are_recorded_and_the_rest_runs(tmp_path: Path) -> None:
    prompts, expected = mixed_file(tmp_path / "mixed.jsonl", 1000)
    out = tmp_path / "results.jsonl"
    with EmbeddedSimulator(SimConfig(seed=2)) as sim:
        done = run_cli(*run_args(sim, prompts, out, "--concurrency", "64"))
        received = sim.stats["received"]
    assert done.returncode == 1  # documented: finished, some items failed
    lines = read_jsonl(out)
    ok = [line for line in lines if line["status"] == "ok"]
    invalid = [line for line in lines if line["status"] == "error"]
    assert len(ok) == 1000 and received == 1000
    assert len(invalid) == 20
    for line in invalid:
        assert line["error"]["type"] == "invalid_input"
    messages = " | ".join(line["error"]["message"] for line in invalid)
    for number, mention in expected.items():
        assert f"mixed.jsonl:{number}:" in messages, number
        message = next(m for m in messages.split(" | ") if f"mixed.jsonl:{number}:" in m)
        assert mention.lower() in message.lower(), (number, message)


def test_strict_refuses_the_file_before_sending_anything(tmp_path: Path) -> None:
    prompts, _ = mixed_file(tmp_path / "mixed.jsonl", 100)
    out = tmp_path / "results.jsonl"
    with EmbeddedSimulator(SimConfig(seed=2)) as sim:
        done = run_cli(*run_args(sim, prompts, out, "--strict"))
        received = sim.stats["received"]
    assert done.returncode == 3
    assert received == 0
    assert "--strict" in done.stderr and "mixed.jsonl:" in done.stderr


def test_duplicate_ids_are_reported_before_any_request(tmp_path: Path) -> None:
    prompts = tmp_path / "dup.jsonl"
    prompts.write_text(
        '{"id": "a", "prompt": "x"}\n{"id": "b", "prompt": "y"}\n{"id": "a", "prompt": "z"}\n'
    )
    with EmbeddedSimulator(SimConfig()) as sim:
        done = run_cli(*run_args(sim, prompts, tmp_path / "o.jsonl"))
        received = sim.stats["received"]
    assert done.returncode == 2 and received == 0
    assert "'a'" in done.stderr or '"a"' in done.stderr
    assert "3" in done.stderr


def test_changed_lines_are_refused_unless_resend_changed_or_restart(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 10)
    out = tmp_path / "results.jsonl"
    with EmbeddedSimulator(SimConfig()) as sim:
        assert run_cli(*run_args(sim, prompts, out)).returncode == 0
        write_prompts(prompts, 12, prefix="Changed")
        refused = run_cli(*run_args(sim, prompts, out))
        assert refused.returncode == 2
        assert "10 items of" in refused.stderr and "--resend-changed" in refused.stderr
        assert "--restart" in refused.stderr
        changed_param = run_cli(*run_args(sim, prompts, out, "--max-tokens", "5", "--restart"))
        assert changed_param.returncode == 0
        again = run_cli(*run_args(sim, prompts, out, "--max-tokens", "6"))
        assert again.returncode == 2 and "max_tokens" in again.stderr
    assert len(read_jsonl(out)) == 12


def test_a_finished_job_rerun_sends_nothing(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 30)
    out = tmp_path / "results.jsonl"
    with EmbeddedSimulator(SimConfig()) as sim:
        assert run_cli(*run_args(sim, prompts, out)).returncode == 0
        assert run_cli(*run_args(sim, prompts, out)).returncode == 0
        received = sim.stats["received"]
    assert received == 30 and len(read_jsonl(out)) == 30


def test_an_openai_batch_file_runs_unchanged_and_keeps_custom_ids(tmp_path: Path) -> None:
    prompts = tmp_path / "batch.jsonl"
    lines = [
        orjson.dumps(
            {
                "custom_id": f"request-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {
                    "model": "gpt-4o-mini",
                    "messages": [
                        {"role": "system", "content": "Be brief."},
                        {"role": "user", "content": f"Hi {i}"},
                    ],
                    "max_tokens": 50,
                },
            }
        )
        for i in range(12)
    ]
    prompts.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "results.jsonl"
    with EmbeddedSimulator(SimConfig()) as sim:
        done = run_cli(*run_args(sim, prompts, out))
    assert done.returncode == 0, done.stderr
    results = read_jsonl(out)
    assert sorted(r["custom_id"] for r in results) == sorted(f"request-{i}" for i in range(12))
    assert all(r["id"] == r["custom_id"] and r["status"] == "ok" for r in results)


def test_csv_txt_and_stdin_inputs(tmp_path: Path) -> None:
    csv_file = tmp_path / "rows.csv"
    csv_file.write_text('key,question\nk1,"What is, with a comma?"\nk2,"Two\nlines"\n')
    txt_file = tmp_path / "prompts.txt"
    txt_file.write_text("first prompt\nsecond prompt\n")
    with EmbeddedSimulator(SimConfig()) as sim:
        csv_run = run_cli(
            *run_args(
                sim, csv_file, tmp_path / "csv.jsonl", "--column", "question", "--id-column", "key"
            )
        )
        txt_run = run_cli(*run_args(sim, txt_file, tmp_path / "txt.jsonl"))
        stdin_args = run_args(sim, Path("-"), tmp_path / "stdin.jsonl")
        stdin_run = run_cli(*stdin_args, stdin=b'{"id": "s1", "prompt": "from a pipe"}\n')
    assert csv_run.returncode == 0, csv_run.stderr
    assert sorted(r["id"] for r in read_jsonl(tmp_path / "csv.jsonl")) == ["k1", "k2"]
    assert txt_run.returncode == 0, txt_run.stderr
    assert len(read_jsonl(tmp_path / "txt.jsonl")) == 2
    assert stdin_run.returncode == 0, stdin_run.stderr
    assert [r["id"] for r in read_jsonl(tmp_path / "stdin.jsonl")] == ["s1"]
    assert not list(tmp_path.glob(".llmgather-stdin-*"))  # the spool is cleaned up


def test_the_output_cannot_be_the_input(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 3)
    before = prompts.read_bytes()
    result = run_cli("run", str(prompts), "-o", str(prompts), "--quiet")
    assert result.returncode == 2 and "both the input and the output" in result.stderr
    assert prompts.read_bytes() == before


def test_a_bad_line_without_an_id_never_collides_with_a_real_id(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        '{"id": 0, "prompt": "a"}\n\n{"id": 2, "prompt": "c"}\n{"id": 1, "prompt": "b"}\n'
    )
    out = tmp_path / "out.jsonl"
    result = run_cli("run", str(prompts), "-o", str(out), "--quiet")
    assert result.returncode == 1, result.stderr  # some items failed: the empty line
    lines = {str(line["id"]): line for line in read_jsonl(out)}
    # Line 2's number is also the id of line 3: the bad line is known as "line-2" instead.
    assert sorted(lines) == ["0", "1", "2", "line-2"]
    assert lines["2"]["status"] == "ok" and lines["line-2"]["status"] == "error"
    assert [line["id"] for line in read_jsonl(out)] == [0, "line-2", 2, 1]  # integers stay so


def test_a_refused_restart_keeps_the_last_job(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 3)
    out = tmp_path / "out.jsonl"
    assert run_cli("run", str(prompts), "-o", str(out), "--quiet").returncode == 0
    with prompts.open("ab") as f:
        f.write(b"not json\n")
    refused = run_cli("run", str(prompts), "-o", str(out), "--restart", "--strict", "--quiet")
    assert refused.returncode == 3, refused.stderr
    status = orjson.loads(run_cli("status", str(out), "--json").stdout)
    assert (status["done"], status["state"]) == (3, "complete")
    assert len(read_jsonl(out)) == 3


def test_a_password_in_the_base_url_is_never_shown_or_stored(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 2)
    out = tmp_path / "out.jsonl"
    with EmbeddedSimulator(SimConfig(latency_ms=0)) as sim:
        url = sim.base_url.replace("http://", "http://user:hunter2@") + "/v1?key=hunter2"
        args = ["run", str(prompts), "-o", str(out), "-m", "openai:x", "--base-url", url]
        result = run_cli(*args, "--json")
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout + result.stderr
    for path in tmp_path.iterdir():
        assert b"hunter2" not in path.read_bytes(), path


def test_the_job_is_known_by_the_model_it_resolves_to(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 2)
    out = tmp_path / "out.jsonl"
    args = ["run", str(prompts), "-o", str(out), "--quiet"]
    assert run_cli(*args, "-m", "gpt-4o-mini").returncode == 0
    # With no key, the bare model is the simulator: naming the simulator is the same job.
    again = run_cli(*args, "-m", "sim:gpt-4o-mini")
    assert again.returncode == 0, again.stderr
    # With a key set, the same bare model means the real API: another job, refused before
    # anything is sent.
    real = run_cli(*args, "-m", "gpt-4o-mini", OPENAI_API_KEY="sk-test")
    assert real.returncode == 2 and "simulated" in real.stderr, real.stderr
    # The store's error names restart=True; the CLI says it with its own flags.
    assert "rerun with --restart to discard the old results, or use a different -o" in real.stderr


async def test_a_job_that_fails_to_start_does_not_stay_claimed(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"id": "a", "prompt": "x"}\n{"id": "a", "prompt": "y"}\n')
    out = tmp_path / "out.jsonl"
    job = Job(JobOptions(input=InputOptions(path=str(prompts)), output_path=str(out)))
    with pytest.raises(DuplicateIdError):
        await job.run()
    with SQLiteJobStore.open(store_path_for(str(out)), create=False) as store:
        assert store.stats().state == "new"  # as it was; not "running" by this live process


def test_lines_written_while_a_job_runs_carry_the_inputs_own_fields(tmp_path: Path) -> None:
    prompts = tmp_path / "batch.jsonl"
    lines = []
    for i in range(300):
        body = {"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]}
        lines.append(
            {"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}
        )
    prompts.write_bytes(b"\n".join(orjson.dumps(line) for line in lines) + b"\n")
    out = tmp_path / "out.jsonl"
    with EmbeddedSimulator(SimConfig(latency_ms=100, seed=3)) as sim:
        process = start(run_args(sim, prompts, out))
        try:
            wait_for_progress(out, at_least=40)
            live = [orjson.loads(line) for line in out.read_bytes().splitlines()[:40]]
        finally:
            process.send_signal(signal.SIGKILL)
            process.communicate(timeout=10)
    assert all(line["custom_id"] == line["id"] for line in live)


def test_an_error_after_sending_began_says_the_work_is_kept(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 400)
    out = tmp_path / "out.jsonl"
    with EmbeddedSimulator(SimConfig(latency_ms=100, seed=3)) as sim:
        process = start(run_args(sim, prompts, out))
        wait_for_progress(out, at_least=20)
        out.unlink()
        out.mkdir()  # the live output can no longer be written
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 4, stderr
    assert "rerun the same command to resume" in stderr
    out.rmdir()
    status = orjson.loads(run_cli("status", str(out), "--json").stdout)
    assert status["done"] >= 20 and status["state"] == "interrupted"


def test_an_input_changed_during_a_first_run_says_to_restore_it_or_restart(
    tmp_path: Path,
) -> None:
    n = 2000
    prompts = write_prompts(tmp_path / "prompts.jsonl", n)
    original = prompts.read_bytes()
    out = tmp_path / "results.jsonl"
    with EmbeddedSimulator(SimConfig(latency_ms=100, seed=3)) as sim:
        args = run_args(sim, prompts, out)
        process = start(args)
        wait_for_progress(out, at_least=20)
        prompts.write_bytes(b"\n".join(original.splitlines()[:10]) + b"\n")  # cut, in place
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 4, stderr
        assert "rerun the same command to go on with the input as it is now" in stderr, stderr
        assert "resumed" not in stderr
        prompts.write_bytes(original)
        finished = run_cli(*args)
    assert finished.returncode == 0, finished.stderr
    assert sorted(line["id"] for line in read_jsonl(out)) == sorted(f"q{i}" for i in range(n))


def read_screen(leader: int, until: bytes, timeout: float = 30) -> bytes:
    """What the program on a pseudo-terminal writes, until `until` appears or it ends."""
    screen = b""
    deadline = time.monotonic() + timeout
    while until not in screen and time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if not ready:
            continue
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the other side is closed, the program has ended
            break
        if not chunk:
            break
        screen += chunk
    return screen


def test_a_second_ctrl_c_on_a_terminal_restores_the_cursor_and_says_what_is_kept(
    tmp_path: Path,
) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 300)
    out = tmp_path / "out.jsonl"
    with EmbeddedSimulator(SimConfig(latency_ms=3000, latency_jitter=0, seed=4)) as sim:
        args = ["run", str(prompts), "-o", str(out), "--model", "openai:gpt-4o-mini",
                "--base-url", sim.base_url + "/v1", "--api-key", "k"]  # fmt: skip
        leader, follower = pty.openpty()
        process = subprocess.Popen(
            [sys.executable, "-m", "llmgather", *args],
            stdin=follower, stdout=follower, stderr=follower, close_fds=True,
            env=cli_env(TERM="xterm-256color"),
        )  # fmt: skip
        os.close(follower)
        try:
            screen = read_screen(leader, until=b"in flight")  # the progress line is drawn
            process.send_signal(signal.SIGINT)
            screen += read_screen(leader, until=b"Press Ctrl-C again")
            process.send_signal(signal.SIGINT)
            screen += read_screen(leader, until=b"\x00never")  # to the end
        finally:
            os.close(leader)
        code = process.wait(timeout=30)
    text = screen.decode(errors="replace")
    assert code == 130, text
    hide, show = b"\x1b[?25l", b"\x1b[?25h"
    assert hide in screen, text  # the progress line hid the cursor...
    assert screen.rindex(show) > screen.rindex(hide), text  # ...and it is shown again
    assert "Quit at once: every result committed so far is kept" in text
    assert "Traceback" not in text
