"""The job store: ingest, duplicates, resume, results, atomic export, identity checks, status."""

from __future__ import annotations

import asyncio
import inspect
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from llmgather import (
    DuplicateIdError,
    InvalidInputError,
    JobBusyError,
    JobError,
    JobMismatchError,
)
from llmgather._types import ErrorInfo, Request, Result, Usage
from llmgather.jobs.encoding import render_result
from llmgather.jobs.inputs import InputItem, read_inputs
from llmgather.jobs.output import rewrite_output
from llmgather.jobs.sink import Sink
from llmgather.jobs.store import JobStore, SQLiteJobStore, fingerprint_file, store_path_for

PARAMS = {"model": "gpt-4o-mini", "max_tokens": 100, "temperature": None}


def item(
    line: int,
    id: str | None = None,
    *,
    error: str | None = None,
    fields: dict[str, str] | None = None,
) -> InputItem:
    id = id or str(line)
    request = None if error else Request.from_prompt(f"prompt {line}", id=id)
    return InputItem(line, id, request, error, fields)


def ok(id: str, text: str = "answer", tokens: tuple[int, int] = (10, 5)) -> tuple[str, Result]:
    return id, Result(
        id=id, status="ok", text=text, usage=Usage(*tokens), attempts=1, latency_ms=12.34
    )


def failed(
    id: str, type: str = "ServerError", message: str = "HTTP 503: overloaded"
) -> tuple[str, Result]:
    return id, Result(id=id, status="error", attempts=3, error=ErrorInfo(type, message, 503))


@pytest.fixture
def output(tmp_path: Path) -> str:
    return str(tmp_path / "results.jsonl")


@pytest.fixture
def store(output: str) -> Iterator[SQLiteJobStore]:
    with SQLiteJobStore.open(store_path_for(output)) as s:
        yield s


def started(store: SQLiteJobStore, items: list[InputItem], fingerprint: str = "f" * 64) -> None:
    assert store.prepare(input_fingerprint=fingerprint, params=PARAMS, restart=False) is False
    store.ingest(items)


def read_output(path: str) -> list[dict[str, object]]:
    with open(path, "rb") as f:
        return [orjson.loads(line) for line in f]


def test_store_path_and_fingerprint(tmp_path: Path) -> None:
    assert store_path_for("out/results.jsonl") == "out/results.jsonl.llmgather.sqlite"
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"x" * 3_000_000)
    import hashlib

    assert fingerprint_file(str(path)) == hashlib.sha256(b"x" * 3_000_000).hexdigest()


def test_store_uses_wal(store: SQLiteJobStore) -> None:
    assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


def test_ingest_marks_valid_pending_and_invalid_as_errors(
    store: SQLiteJobStore, output: str
) -> None:
    started(
        store, [item(1), item(2, error="in.jsonl:2: bad"), item(3, "c", fields={"custom_id": "c"})]
    )
    assert list(store.pending_lines()) == [1, 3]
    stats = store.stats()
    assert (stats.total, stats.pending, stats.invalid, stats.failed, stats.done) == (3, 2, 1, 0, 0)
    assert rewrite_output(store, output) == 1
    [line] = read_output(output)
    assert line["id"] == "2" and line["status"] == "error"
    assert line["error"] == {
        "type": "invalid_input",
        "status_code": None,
        "message": "in.jsonl:2: bad",
    }


def test_duplicate_ids_are_reported_with_lines_and_nothing_is_stored(store: SQLiteJobStore) -> None:
    items = [item(n, f"id{n % 15}" if n > 30 else f"u{n}") for n in range(1, 61)]
    items.append(item(61, "u1"))
    assert store.prepare(input_fingerprint="a", params={}, restart=False) is False
    with pytest.raises(DuplicateIdError) as caught:
        store.ingest(items)
    error = caught.value
    assert isinstance(error, InvalidInputError)
    assert error.ids == 16 and error.lines == 32  # 15 ids twice each, and u1 twice
    assert len(error.examples) == 10
    assert error.examples[0] == ("id1", [31, 46])  # in the order the repeats are met
    assert ("u1", [1, 61]) not in error.examples
    message = str(error)
    assert "16 ids used by more than one input line (32 lines in all)" in message
    assert "'id1' on lines 31, 46" in message and "first 10 shown" in message
    assert store._conn.execute("SELECT count(*) FROM items").fetchone() == (0,)
    # A fixed file (new fingerprint) can be rerun: the unfinished job is replaced, not a mismatch.
    assert store.prepare(input_fingerprint="b", params={}, restart=False) is False
    assert store.ingest([item(1), item(2)]).valid == 2


def test_duplicates_across_ingest_batches(store: SQLiteJobStore) -> None:
    store.prepare(input_fingerprint="a", params={}, restart=False)
    items = (item(n, "same" if n in (3, 12_000) else None) for n in range(1, 12_001))
    with pytest.raises(DuplicateIdError, match="'same' on lines 3, 12000"):
        store.ingest(items)


def test_resume_skips_what_is_done_and_keeps_the_ingest(output: str) -> None:
    path = store_path_for(output)
    with SQLiteJobStore.open(path) as store:
        started(store, [item(n) for n in range(1, 6)])
        store.mark_state("running")
        store.record([ok("1"), ok("3"), failed("4")])
    # the next run: same input, same parameters
    with SQLiteJobStore.open(path) as store:
        assert store.prepare(input_fingerprint="f" * 64, params=PARAMS, restart=False) is True
        report = store.ingest(iter(()))  # not read: ingestion finished in the first run
        assert (report.total, report.valid, report.invalid) == (5, 5, 0)
        assert list(store.pending_lines()) == [2, 5]
        assert store.reset_failed() == 1
        assert list(store.pending_lines()) == [2, 4, 5]
        assert store.stats().failed == 0


def test_retry_failed_never_retries_invalid_lines(store: SQLiteJobStore) -> None:
    started(store, [item(1), item(2, error="x:2: bad"), item(3)])
    store.record([failed("1"), ok("3")])
    assert store.reset_failed() == 1
    assert list(store.pending_lines()) == [1]


def test_pending_lines_are_paged_and_survive_recording_meanwhile(store: SQLiteJobStore) -> None:
    started(store, [item(n) for n in range(1, 5_001)])
    seen = []
    for line in store.pending_lines():
        seen.append(line)
        store.record([ok(str(line))])  # what the engine does while the stream is open
    assert seen == list(range(1, 5_001))
    assert list(store.pending_lines()) == []


def test_pending_items_merges_a_fresh_read(tmp_path: Path, store: SQLiteJobStore) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(
        b"".join(orjson.dumps({"prompt": f"p{n}"}) + b"\n" for n in range(1, 8)) + b"[]\n"
    )
    store.prepare(input_fingerprint=fingerprint_file(str(path)), params={}, restart=False)
    store.ingest(read_inputs(str(path)))
    store.record([ok("2"), ok("5")])
    assert [i.line for i in store.pending_items(read_inputs(str(path)))] == [1, 3, 4, 6, 7]


def test_pending_items_refuses_a_line_that_is_not_the_one_ingested(
    tmp_path: Path, store: SQLiteJobStore
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"id": "a", "prompt": "one"}\n{"id": "b", "prompt": "two"}\n')
    store.prepare(input_fingerprint=fingerprint_file(str(path)), params={}, restart=False)
    store.ingest(read_inputs(str(path)))
    path.write_bytes(b'{"id": "a", "prompt": "one"}\n{"id": "b", "prompt": "too"}\n')
    read = store.pending_items(read_inputs(str(path)))
    assert next(read).id == "a"  # unchanged: sent
    with pytest.raises(InvalidInputError, match=r"line 2 .* is not what it was"):
        next(read)
    path.write_bytes(b'{"id": "a", "prompt": "one"}\n{"id": "c", "prompt": "two"}\n')
    with pytest.raises(InvalidInputError, match=r"line 2 .* had the id 'b' and now has 'c'"):
        list(store.pending_items(read_inputs(str(path))))


def test_a_store_made_before_item_digests_gains_the_column_and_resumes(
    tmp_path: Path, output: str
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"id": "a", "prompt": "one"}\n{"id": "b", "prompt": "two"}\n')
    with SQLiteJobStore.open(store_path_for(output)) as store:
        store.prepare(input_fingerprint=fingerprint_file(str(path)), params={}, restart=False)
        store.ingest(read_inputs(str(path)))
        store.record([ok("a")])
    with sqlite3.connect(store_path_for(output)) as conn:
        conn.execute("ALTER TABLE items DROP COLUMN digest")  # the schema before digests
    with SQLiteJobStore.open(store_path_for(output)) as store:
        assert store.prepare(
            input_fingerprint=fingerprint_file(str(path)), params={}, restart=False
        )
        assert [i.id for i in store.pending_items(read_inputs(str(path)))] == ["b"]


def priced(id: str, cost: str) -> tuple[str, Result]:
    id, result = ok(id)
    result.cost, result.cost_basis = Decimal(cost), "standard"
    return id, result


def test_a_store_made_before_the_cost_column_gains_it_read_from_its_results(
    tmp_path: Path, output: str
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"id": "a", "prompt": "one"}\n{"id": "b", "prompt": "two"}\n')
    with SQLiteJobStore.open(store_path_for(output)) as store:
        store.prepare(input_fingerprint=fingerprint_file(str(path)), params={}, restart=False)
        store.ingest(read_inputs(str(path)))
        store.record([priced("a", "0.000123456789")])
    with sqlite3.connect(store_path_for(output)) as conn:
        for table in ("items", "retired"):  # the schema before the cost column
            conn.execute(f"ALTER TABLE {table} DROP COLUMN cost_nanos")
    with SQLiteJobStore.open(store_path_for(output)) as store:
        store.prepare(input_fingerprint=fingerprint_file(str(path)), params={}, restart=False)
        # The line's cost (to the nano-dollar), read from its JSON once.
        assert store.stats().cost_usd == Decimal("0.000123457")
        store.record([priced("b", "0.5")])
        stats = store.stats()
        assert (stats.cost_usd, stats.priced, stats.projected_usd) == (
            Decimal("0.500123457"),
            2,
            Decimal("0.500123457"),
        )
    with sqlite3.connect(store_path_for(output)) as conn:
        assert conn.execute("SELECT cost_nanos FROM items ORDER BY line").fetchall() == [
            (123457,),
            (500_000_000,),
        ]


def test_the_job_cost_is_summed_from_the_cost_column_not_the_json(
    store: SQLiteJobStore, output: str
) -> None:
    started(store, [item(1, "a"), item(2, "b"), item(3, "c"), item(4, "d")])
    store.record([priced("a", "0.25"), priced("b", "0.5"), ok("c"), failed("d")])
    with sqlite3.connect(store_path_for(output)) as conn:  # the JSON alone no longer counts
        conn.execute("UPDATE items SET result = json_set(result, '$.cost', 99)")
    stats = store.stats()
    assert (stats.cost_usd, stats.priced, stats.unpriced) == (Decimal("0.75"), 2, 1)
    assert stats.projected_usd == Decimal("0.75")  # nothing pending: what was spent


def test_the_projection_is_the_average_priced_answer_for_each_pending_item(
    store: SQLiteJobStore,
) -> None:
    started(store, [item(n, f"i{n}") for n in range(1, 11)])
    assert store.stats().projected_usd is None  # nothing priced yet: nothing to project
    store.record([priced("i1", "0.25"), priced("i2", "0.75"), failed("i3")])
    stats = store.stats()
    assert (stats.cost_usd, stats.pending) == (Decimal("1"), 7)
    assert stats.projected_usd == Decimal("1") + Decimal("0.5") * 7
    assert stats.to_dict()["projected_usd"] == 4.5
    # An item a spent cost cap left unsent is still to answer (a rerun with a higher cap).
    store.record([failed("i4", type="budget_exhausted", message="not sent: the cap is spent")])
    stats = store.stats()
    assert (stats.pending, stats.unsent) == (6, 1)
    assert stats.projected_usd == Decimal("4.5")


def test_record_batches_store_results_and_tokens(store: SQLiteJobStore, output: str) -> None:
    started(store, [item(1, "a"), item(2, "b"), item(3, "c", fields={"custom_id": "c"})])
    assert store.record([ok("a", tokens=(100, 20)), failed("b"), ok("c", tokens=(1, 2))]) == 3
    assert store.record([ok("unknown")]) == 0
    stats = store.stats()
    assert (stats.done, stats.failed, stats.input_tokens, stats.output_tokens) == (2, 1, 101, 22)
    assert rewrite_output(store, output) == 3
    lines = read_output(output)
    assert lines[0] == {**Result(id="a", status="ok", text="answer", usage=Usage(100, 20), attempts=1,
                                 latency_ms=12.34).to_dict()}  # fmt: skip
    assert lines[1]["error"] == {
        "type": "ServerError",
        "status_code": 503,
        "message": "HTTP 503: overloaded",
    }
    assert lines[2]["custom_id"] == "c" and lines[2]["id"] == "c"
    assert next(iter(lines[2])) == "custom_id"  # the Batch API key leads the line


def test_output_line_carries_the_input_id(store: SQLiteJobStore, output: str) -> None:
    started(store, [item(1, "mine")])
    store.record([("mine", Result(id="engine-internal", status="ok", text="t"))])
    rewrite_output(store, output)
    assert read_output(output)[0]["id"] == "mine"


def test_export_is_in_input_order_without_duplicates(store: SQLiteJobStore, output: str) -> None:
    started(store, [item(n) for n in range(1, 11)])
    store.record([ok("7"), ok("2", text="first try"), failed("9")])
    store.record([ok("2", text="second try"), ok("1")])
    Path(output).write_text("stale content from an old run\n")
    assert rewrite_output(store, output) == 4
    lines = read_output(output)
    assert [line["id"] for line in lines] == ["1", "2", "7", "9"]
    assert lines[1]["text"] == "second try"
    assert [p for p in os.listdir(os.path.dirname(output)) if p.endswith(".tmp")] == []


def test_export_while_recording_from_another_thread(store: SQLiteJobStore, output: str) -> None:
    started(store, [item(n) for n in range(1, 3_001)])
    done = threading.Event()

    def recorder() -> None:
        for start in range(1, 3_001, 100):
            store.record([ok(str(n)) for n in range(start, start + 100)])
        done.set()

    thread = threading.Thread(target=recorder)
    thread.start()
    while not done.is_set():
        count = rewrite_output(store, output)
        ids = [int(str(line["id"])) for line in read_output(output)]
        assert len(ids) == count and ids == sorted(set(ids))
    thread.join()
    assert rewrite_output(store, output) == 3_000


def test_mismatch_names_changed_parameter_and_file(output: str) -> None:
    path = store_path_for(output)
    with SQLiteJobStore.open(path) as store:
        store.prepare(
            input_fingerprint="a" * 64, params={**PARAMS, "api_key_env": "X"}, restart=False
        )
        store.ingest([item(1)])
    with SQLiteJobStore.open(path) as store:
        with pytest.raises(JobMismatchError) as caught:
            store.prepare(
                input_fingerprint="b" * 64,
                params={**PARAMS, "model": "gpt-4o", "api_key_env": "Y", "stream": True},
                restart=False,
            )
    message = str(caught.value)
    assert isinstance(caught.value, JobError)
    assert "input file changed" not in message  # the input is merged line by line
    assert 'parameter \'model\' was "gpt-4o-mini" now "gpt-4o"' in message
    assert "parameter 'stream' was unset now true" in message
    assert "parameter 'api_key_env' was (hidden) now (hidden)" in message
    assert "'max_tokens'" not in message
    # The library names its own parameter; the CLI says --restart and -o (test_cli_jobs).
    assert "Start over with restart=True to discard the old results" in message
    assert "--restart" not in message and "different -o" not in message
    assert message.startswith(output)


def test_another_input_file_alone_is_not_a_mismatch(output: str) -> None:
    with SQLiteJobStore.open(store_path_for(output)) as store:
        started(store, [item(1)], fingerprint="1" * 64)
        store.mark_state("complete")
        assert store.prepare(input_fingerprint="2" * 64, params=PARAMS, restart=False) is True


def test_secret_looking_values_are_never_shown(store: SQLiteJobStore) -> None:
    store.prepare(
        input_fingerprint="a",
        params={"base_url": "https://u:pw@host/v1", "x": "sk-abc"},
        restart=False,
    )
    store.ingest([item(1)])
    with pytest.raises(JobMismatchError) as caught:
        store.prepare(
            input_fingerprint="a",
            params={"base_url": "https://host/v1", "x": "sk-def"},
            restart=False,
        )
    assert "pw" not in str(caught.value) and "sk-" not in str(caught.value)


def test_restart_discards_the_old_job(output: str) -> None:
    with SQLiteJobStore.open(store_path_for(output)) as store:
        started(store, [item(1), item(2)])
        store.record([ok("1")])
        assert (
            store.prepare(input_fingerprint="new", params={"model": "other"}, restart=True) is False
        )
        assert store.stats().total == 0
        store.ingest([item(1), item(2), item(3)])
        assert list(store.pending_lines()) == [1, 2, 3]
        assert (
            store.prepare(input_fingerprint="new", params={"model": "other"}, restart=False) is True
        )


def test_interrupted_ingest_is_redone(store: SQLiteJobStore) -> None:
    store.prepare(input_fingerprint="a", params={}, restart=False)

    def items() -> Iterator[InputItem]:
        yield from (item(n) for n in range(1, 7_000))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.ingest(items())
    assert store.prepare(input_fingerprint="a", params={}, restart=False) is False
    assert store.ingest([item(1)]).total == 1


def test_stats_states_and_top_errors(store: SQLiteJobStore) -> None:
    assert store.stats().state == "new"
    items = [item(n) for n in range(1, 21)] + [item(21, error="in.jsonl:21: field \"x\" bad"),
                                               item(22, error="in.jsonl:22: field \"x\" bad")]  # fmt: skip
    started(store, items)
    store.mark_state("running")
    assert store.stats().state == "running"
    store.record([failed(str(n)) for n in range(1, 6)])
    store.record(
        [
            failed(str(n), "RateLimitError", f"HTTP 429: slow down (request {n})")
            for n in range(6, 9)
        ]
    )
    store.record([failed("9", "AuthenticationError", "HTTP 401: bad key")])
    store.record([ok(str(n)) for n in range(10, 16)])
    stats = store.stats()
    assert (stats.done, stats.failed, stats.invalid, stats.pending, stats.total) == (6, 9, 2, 5, 22)
    assert stats.top_errors[0] == ("ServerError", "HTTP 503: overloaded", 5)
    assert stats.top_errors[1] == ("invalid_input", 'field "x" bad', 2)
    assert len(stats.top_errors) == 5
    assert stats.started_at is not None and stats.elapsed_s >= 0
    store.mark_state("complete")  # with items pending, as an older llmgather could
    assert store.stats().state == "interrupted"
    store.record([ok(str(n)) for n in range(16, 21)])
    later = store.stats()
    assert later.state == "complete"
    assert (
        later.throughput_per_min == pytest.approx(20 / later.elapsed_s * 60)
        if later.elapsed_s
        else True
    )
    with pytest.raises(ValueError, match="unknown job state"):
        store.mark_state("paused")


def test_a_run_that_died_reads_as_interrupted(store: SQLiteJobStore) -> None:
    started(store, [item(1)])
    store.mark_state("running")
    store._set_meta(pid=2**22 + 12345)  # a process that does not exist
    assert store.stats().state == "interrupted"
    # and it does not block the next run
    assert store.prepare(input_fingerprint="f" * 64, params=PARAMS, restart=False) is True


def test_a_live_run_blocks_a_second_one(store: SQLiteJobStore) -> None:
    started(store, [item(1)])
    store.mark_state("running")
    store._set_meta(pid=os.getppid())  # alive, and not us
    with pytest.raises(JobBusyError, match=f"pid {os.getppid()}"):
        store.prepare(input_fingerprint="f" * 64, params=PARAMS, restart=True)


def test_elapsed_time_adds_up_over_runs(store: SQLiteJobStore) -> None:
    started(store, [item(1)])
    store.mark_state("running")
    time.sleep(0.05)
    store.mark_state("interrupted")
    first = store.stats().elapsed_s
    assert first >= 0.05
    time.sleep(0.05)  # time between runs does not count
    assert store.stats().elapsed_s == first


def test_large_ingest(tmp_path: Path, store: SQLiteJobStore, output: str) -> None:
    path = tmp_path / "big.jsonl"
    with open(path, "wb") as f:
        for n in range(200_000):
            f.write(b'{"prompt": "classify row %d", "id": "row-%d"}\n' % (n, n))
    store.prepare(input_fingerprint=fingerprint_file(str(path)), params={}, restart=False)
    report = store.ingest(read_inputs(str(path)))
    assert (report.total, report.valid) == (200_000, 200_000)
    pending = store.pending_lines()
    assert next(pending) == 1
    assert sum(1 for _ in pending) == 199_999
    store.record([ok(f"row-{n}") for n in range(0, 200_000, 2)])
    assert rewrite_output(store, output) == 100_000


def test_status_command(output: str) -> None:
    from llmgather.cli.status import status_command  # here: the cli package is someone else's

    with SQLiteJobStore.open(store_path_for(output)) as store:
        started(store, [item(1), item(2), item(3, error="in.jsonl:3: bad")])
        store.mark_state("running")
        store.record([ok("1", tokens=(1234, 56)), failed("2")])
        store.mark_state("interrupted")
    runner = CliRunner()
    result = runner.invoke(status_command, [output])
    assert result.exit_code == 0, result.output
    for text in ("interrupted", "done", "failed", "invalid", "pending", "1,234 in, 56 out", "ServerError",
                 "HTTP 503: overloaded", "items/min"):  # fmt: skip
        assert text in result.output
    result = runner.invoke(status_command, [output, "--json"])
    assert result.exit_code == 0, result.output
    data = orjson.loads(result.output)
    assert {k: data[k] for k in ("total", "done", "failed", "invalid", "pending", "state")} == {
        "total": 3, "done": 1, "failed": 1, "invalid": 1, "pending": 0, "state": "interrupted",
    }  # fmt: skip
    assert data["input_tokens"] == 1234 and data["output_tokens"] == 56
    assert data["top_errors"][0] == {
        "type": "ServerError",
        "message": "HTTP 503: overloaded",
        "count": 1,
    }
    assert isinstance(data["started_at"], str) and data["store"] == store_path_for(output)


def test_status_without_a_job(tmp_path: Path) -> None:
    from llmgather.cli.status import status_command

    output = str(tmp_path / "nothing.jsonl")
    result = CliRunner().invoke(status_command, [output])
    assert result.exit_code != 0
    assert (
        f"no llmgather job found for {output} (expected {store_path_for(output)})" in result.output
    )
    assert not os.path.exists(store_path_for(output))


# -- the protocol, the output file, the writer thread -------------------------------------------


def test_the_sqlite_store_implements_the_protocol() -> None:
    methods = [
        name
        for name, value in vars(JobStore).items()
        if callable(value) and not name.startswith("_")
    ]
    assert {"prepare", "ingest", "record", "pending_items", "finished_rows", "stats"} <= set(
        methods
    )
    for name in methods:
        assert inspect.signature(getattr(SQLiteJobStore, name)) == inspect.signature(
            getattr(JobStore, name)
        ), name


def test_the_store_never_writes_the_output_file(store: SQLiteJobStore, output: str) -> None:
    started(store, [item(1), item(2, error="in.jsonl:2: bad"), item(3, "c", fields={"id": 3})])
    store.mark_state("running")
    store.record([ok("1"), failed("c")])
    store.reset_failed()
    store.mark_state("complete")
    assert not os.path.exists(output)
    rows = list(store.finished_rows())
    assert [orjson.loads(result)["id"] for _, result in rows] == ["1", "2"]
    assert rewrite_output(store, output) == 2


@pytest.mark.parametrize("fields", [None, {"custom_id": "c"}, {"id": 42}])
def test_live_lines_and_the_export_are_one_renderer(
    store: SQLiteJobStore, output: str, fields: dict[str, object] | None
) -> None:
    id = "42" if fields and "id" in fields else "c"
    started(store, [item(1, id, fields=fields)])
    result = Result(
        id=id, status="ok", text="é\n\"", usage=Usage(3, 4), attempts=2, latency_ms=1 / 3,
        metadata={"k": [1.5, None]},
    )  # fmt: skip
    live = render_result(id, result, dict(fields) if fields else None)
    store.record([(id, result)])
    rewrite_output(store, output)
    assert Path(output).read_bytes() == live
    if fields:
        assert next(iter(orjson.loads(live).items())) == next(iter(fields.items()))


@pytest.mark.parametrize("fields", [None, {"custom_id": "c"}, {"id": 42}])
def test_the_writer_serialises_once_for_the_row_and_the_live_line(
    store: SQLiteJobStore, output: str, fields: dict[str, object] | None
) -> None:
    """The sink encodes each result once for its store row and its live line: both still say
    what the one renderer says, with the input's fields set over the line."""
    id = "42" if fields and "id" in fields else "c"
    started(store, [item(1, id, fields=fields)])
    result = Result(
        id=id, status="ok", text="é\n\"", usage=Usage(3, 4), attempts=2, latency_ms=1 / 3,
        metadata={"k": [1.5, None]},
    )  # fmt: skip

    async def write() -> None:
        async with Sink(store, output, {id: dict(fields)} if fields else {}) as sink:
            await sink.add(result)

    asyncio.run(write())
    live = Path(output).read_bytes()
    assert live == render_result(id, result, dict(fields) if fields else None)
    rewrite_output(store, output)
    assert Path(output).read_bytes() == live


class HeldStore:
    """A store whose `record` waits until the test lets it go on."""

    def __init__(self, store: SQLiteJobStore) -> None:
        self.store = store
        self.recording = threading.Event()
        self.release = threading.Event()

    def record(self, results: list[tuple[str, Result]], *encoded: Any) -> int:
        self.recording.set()
        self.release.wait()
        return self.store.record(results, *encoded)


async def test_the_writer_thread_is_owned_and_joined(store: SQLiteJobStore, output: str) -> None:
    started(store, [item(n) for n in range(1, 101)])
    async with Sink(store, output, {}) as sink:
        thread = sink._thread
        assert thread.is_alive() and not thread.daemon
        for n in range(1, 101):
            await sink.add(ok(str(n))[1])
    assert not thread.is_alive()
    assert store.stats().done == 100
    assert len(read_output(output)) == 100  # the live lines


async def test_a_cancelled_run_still_commits_and_joins_the_writer(
    store: SQLiteJobStore, output: str
) -> None:
    started(store, [item(1), item(2)])
    held = HeldStore(store)
    leaving = asyncio.Event()
    threads: list[threading.Thread] = []

    async def run() -> None:
        async with Sink(held, output, {}) as sink:  # type: ignore[arg-type]
            threads.append(sink._thread)
            await sink.add(ok("1")[1])
            await sink.add(ok("2")[1])
            leaving.set()

    task = asyncio.create_task(run())
    try:
        await asyncio.to_thread(held.recording.wait)
        await leaving.wait()
        task.cancel()
        for _ in range(5):
            await asyncio.sleep(0)
        assert not task.done()  # still waiting for the writer, which holds results
    finally:
        held.release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not threads[0].is_alive()
    assert store.stats().done == 2
