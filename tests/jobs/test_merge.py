"""A rerun's input merged into the job store by id and content (`jobs.store.merge`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from llmgather import ChangedItemsError, DuplicateIdError
from llmgather._types import ErrorInfo, Request, Result, Usage
from llmgather.jobs.inputs import InputItem, read_inputs
from llmgather.jobs.inputs.item import request_digest
from llmgather.jobs.output import rewrite_output
from llmgather.jobs.store import SQLiteJobStore, store_path_for

PARAMS = {"model": "gpt-4o-mini"}


def item(line: int, id: str, prompt: str = "", *, metadata: object = None) -> InputItem:
    request = Request.from_prompt(prompt or f"prompt {id}", id=id, metadata=metadata)
    return InputItem(line, id, request, None)


def bad(line: int, id: str | None = None) -> InputItem:
    return InputItem(line, id or str(line), None, f"in.jsonl:{line}: bad", digest=b"x")


def ok(id: str, text: str = "answer", metadata: object = None) -> tuple[str, Result]:
    return id, Result(
        id=id, status="ok", text=text, usage=Usage(3, 4), attempts=1, metadata=metadata
    )


def failed(id: str) -> tuple[str, Result]:
    return id, Result(id=id, status="error", attempts=1, error=ErrorInfo("BadRequestError", "long"))


@pytest.fixture
def output(tmp_path: Path) -> str:
    return str(tmp_path / "out.jsonl")


@pytest.fixture
def store(output: str) -> Iterator[SQLiteJobStore]:
    with SQLiteJobStore.open(store_path_for(output)) as s:
        s.prepare(input_fingerprint="a", params=PARAMS, restart=False)
        yield s


def rerun(store: SQLiteJobStore, items: list[InputItem], **flags: bool) -> list[str]:
    """A rerun on an edited input (each with bytes of its own: another fingerprint)."""
    fingerprint = uuid.uuid4().hex
    assert store.prepare(input_fingerprint=fingerprint, params=PARAMS, restart=False) is True
    return list(store.ingest(items, input_fingerprint=fingerprint, **flags).changes)


def shown(store: SQLiteJobStore, output: str) -> list[dict[str, object]]:
    rewrite_output(store, output)
    with open(output, "rb") as f:
        return [orjson.loads(line) for line in f]


def test_the_digest_is_of_what_is_sent_not_of_how_the_line_spells_it(tmp_path: Path) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_bytes(b'{"id": 1, "prompt": "hi", "max_tokens": 5, "metadata": {"a": 1}}\n')
    second.write_bytes(b'{"max_tokens":5,"prompt":"hi","id":"1","metadata":{"a":2}}\n')
    [a], [b] = read_inputs(str(first)), read_inputs(str(second))
    assert a.content_digest == b.content_digest
    assert a.request is not None
    assert request_digest(a.request.replace(max_tokens=6)) != a.content_digest


def test_a_kept_result_takes_the_metadata_the_line_has_now(
    store: SQLiteJobStore, output: str
) -> None:
    store.ingest([item(1, "a", metadata={"v": 1}), item(2, "b")])
    store.record([ok("a", metadata={"v": 1}), ok("b")])
    assert rerun(store, [item(1, "a", metadata={"v": 2}), item(2, "b", metadata=[1])]) == []
    assert store.stats().pending == 0
    lines = shown(store, output)
    assert [line["metadata"] for line in lines] == [{"v": 2}, [1]]
    assert all(line["text"] == "answer" for line in lines)


def test_a_refused_rerun_changes_nothing(store: SQLiteJobStore, output: str) -> None:
    store.ingest([item(1, "a"), item(2, "b")])
    store.record([ok("a"), ok("b")])
    before = shown(store, output)
    with pytest.raises(ChangedItemsError) as caught:
        rerun(store, [item(1, "a", "edited"), item(2, "b"), item(3, "c")])
    assert caught.value.count == 1 and caught.value.examples == [("a", 1)]
    assert "resend_changed=True" in str(caught.value)
    with pytest.raises(DuplicateIdError):
        rerun(store, [item(1, "a"), item(2, "a")])
    assert shown(store, output) == before and store.stats().total == 2


def test_resend_changed_sends_the_changed_item_and_moves_the_epoch_on(
    store: SQLiteJobStore,
) -> None:
    store.ingest([item(1, "a"), item(2, "b")])
    store.record([ok("a")])
    epoch = store.epoch()
    # "b" had no result yet: its edit is taken as it is, but a queue's result for it is stale.
    changes = rerun(store, [item(1, "a", "edited"), item(2, "b", "edited")], resend_changed=True)
    assert changes == ["1 item changed, sent again", "1 item changed before being sent"]
    assert list(store.pending_lines()) == [1, 2]
    assert store.epoch() != epoch
    epoch = store.epoch()
    assert rerun(store, [item(1, "a", "edited"), item(2, "b", "edited"), item(3, "c")]) == [
        "1 item new in the input"
    ]
    assert store.epoch() == epoch  # a new id has no result anywhere yet


def test_a_line_made_invalid_keeps_its_result_until_it_is_fixed_back(
    store: SQLiteJobStore, output: str
) -> None:
    store.ingest([item(1, "a"), item(2, "2")])  # "2": the id a line without one gets
    store.record([ok("a", "A"), ok("2", "two")])
    assert rerun(store, [item(1, "a"), bad(2)]) == [
        "1 item now invalid (earlier results kept in the job store)"
    ]
    assert [line["status"] for line in shown(store, output)] == ["ok", "error"]
    assert rerun(store, [item(1, "a"), item(2, "2")]) == []
    assert [line["text"] for line in shown(store, output)] == ["A", "two"]
    assert store.stats().pending == 0


def test_a_store_an_older_llmgather_made_resumes_with_unknown_digests(output: str) -> None:
    path = store_path_for(output)
    with SQLiteJobStore.open(path) as store:
        store.prepare(input_fingerprint="a", params=PARAMS, restart=False)
        store.ingest([item(1, "a"), item(2, "b")])
        store.record([ok("a")])
        # As an older llmgather left it: line digests, no record of what they are of.
        store._conn.execute("UPDATE items SET digest = x'00'")
        store._conn.execute("DELETE FROM meta WHERE key = 'digests'")
    with SQLiteJobStore.open(path) as store:
        assert store.prepare(input_fingerprint="a", params=PARAMS, restart=False) is True
        store.ingest([], input_fingerprint="a")
        # The pending line read again is not taken for an edit; the done one is unknown now.
        assert [i.id for i in store.pending_items([item(1, "a"), item(2, "b")])] == ["b"]
        with pytest.raises(ChangedItemsError):
            store.ingest([item(1, "a"), item(2, "b")], input_fingerprint="c")


def test_an_edited_failed_item_is_sent_again_without_asking(store: SQLiteJobStore) -> None:
    store.ingest([item(1, "a"), item(2, "b"), item(3, "c")])
    store.record([ok("a"), failed("b")])
    epoch = store.epoch()
    # "b" failed (its prompt too long, say) and was shortened: its failure cost no answer.
    # "c", pending, left the input: if it comes back edited, a queue's old answer is stale.
    changes = rerun(store, [item(1, "a"), item(2, "b", "shorter")])
    assert changes == [
        "1 item changed since they failed, sent again",
        "1 item no longer in the input (never answered)",
    ]
    assert list(store.pending_lines()) == [2]
    assert store.epoch() != epoch


def test_a_line_still_broken_is_not_reported_again(store: SQLiteJobStore) -> None:
    store.ingest([item(1, "a"), item(2, "b")])
    store.record([ok("a"), ok("b")])
    assert rerun(store, [item(1, "a"), bad(2, "b")]) == [
        "1 item now invalid (earlier results kept in the job store)"
    ]
    assert rerun(store, [item(1, "a"), bad(2, "b"), item(3, "c")]) == ["1 item new in the input"]
