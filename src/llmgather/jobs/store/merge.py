"""A rerun on an edited input: the new input merged into the job by id, so only what changed is sent.

Each item is known by its id and the digest of what is sent for it (`InputItem.content_digest`).
The new input is read into a staging table of the items' shape (`schema.STAGING`), then:

    same id, same digest, a result      → the result is kept (with the metadata the line has now)
    same id, another digest, an answer  → "changed": refused (ChangedItemsError, nothing touched)
                                          unless `resend_changed`; then pending, sent again
    same id, another digest, failed     → pending, sent again (its failure cost no answer)
    same id, no result yet              → pending, as the line is now
    an id the job never had             → pending ("added")
    a line invalid before, valid now    → pending ("fixed")
    an id no longer in the input        → its result moves to `retired`: kept, not in the output
    a line valid before, invalid now    → an invalid line; its result moves to `retired`

An id that comes back finds its result in `retired` again. Everything runs in SQL over the two
tables: no id set is held in memory, whatever the size of the job.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from llmgather._errors import ChangedItemsError
from llmgather.jobs.inputs import InputItem
from llmgather.jobs.store.ingest import IngestReport, insert_items
from llmgather.jobs.store.rows import INVALID_INPUT
from llmgather.jobs.store.schema import ITEM_COLUMNS, STAGING, transaction

__all__ = ["InputChanges", "merge_items"]

_EXAMPLES = 10
# What a bad line without an id of its own is known by in the output: its line number.
_ITEM_KEY = "coalesce(id, CAST(line AS TEXT))"
_SHOWN_ID = "coalesce(n.id, CAST(n.line AS TEXT))"
# The old rows by `key`, one per key: the items, and the results retired by earlier reruns.
# A retired result wins over the invalid line that replaced it, so fixing the line back to
# what it was finds its result.
_OLD = f"""CREATE TEMP TABLE old AS
    SELECT {_ITEM_KEY} AS key, 0 AS retired, {ITEM_COLUMNS} FROM items
        WHERE {_ITEM_KEY} NOT IN (SELECT id FROM retired)
    UNION ALL SELECT id AS key, 1 AS retired, {ITEM_COLUMNS} FROM retired"""
# An old row with a result (ok or failed; not an invalid line, not one still pending).
_HAS_RESULT = f"o.status != 'pending' AND o.error_type IS NOT '{INVALID_INPUT}'"
# A pending new item whose request is not the one its old row was sent (or read) with.
_EDITED = "n.status = 'pending' AND o.digest IS NOT n.digest"


@dataclass(frozen=True, slots=True)
class InputChanges:
    """How a rerun's input differs from the job's, by item."""

    added: int = 0  # ids the job never had: sent
    fixed: int = 0  # lines invalid before and valid now: sent
    changed: int = 0  # items with an answer whose request changed: sent again (resend_changed)
    edited_failed: int = 0  # failed items whose request changed: sent again (nothing paid lost)
    edited_pending: int = 0  # items not yet finished whose request changed: sent as they are now
    disappeared: int = 0  # ids with results no longer in the input: results kept in the store
    unsent_gone: int = 0  # ids without a result no longer in the input
    broken: int = 0  # items valid before and invalid now: their results kept in the store

    def describe(self) -> list[str]:
        """One phrase per kind of change, for the summary; [] when the items are the same."""
        phrases = []
        for count, what in (
            (self.added, "{} new in the input"),
            (self.fixed, "{} fixed (invalid before)"),
            (self.changed, "{} changed, sent again"),
            (self.edited_failed, "{} changed since they failed, sent again"),
            (self.edited_pending, "{} changed before being sent"),
            (self.disappeared, "{} no longer in the input (results kept in the job store)"),
            (self.unsent_gone, "{} no longer in the input (never answered)"),
            (self.broken, "{} now invalid (earlier results kept in the job store)"),
        ):
            if count:
                phrases.append(what.format(f"{count} item{'s' if count != 1 else ''}"))
        return phrases

    @property
    def resend_anew(self) -> bool:
        """Whether an item that may have been sent before may be sent with another request
        now (or later: a pending id removed may come back edited): results a work queue
        still holds for the job belong to the old requests."""
        return bool(self.changed or self.edited_failed or self.edited_pending or self.unsent_gone)


def merge_items(
    conn: sqlite3.Connection, items: Iterable[InputItem], *, resend_changed: bool, source: str
) -> tuple[IngestReport, InputChanges]:
    """Merge a rerun's input into the job's items (see the module); ChangedItemsError, the
    store untouched, when items with an answer changed and `resend_changed` is not set.
    DuplicateIdError, the store untouched, as at the first ingest."""
    conn.executescript(STAGING)
    try:
        report = insert_items(conn, items, table="temp.incoming")
        conn.execute(_OLD)
        conn.execute("CREATE UNIQUE INDEX temp.old_key ON old (key)")
        changes = _count(conn)
        if changes.changed and not resend_changed:
            raise ChangedItemsError(source, changes.changed, _changed_examples(conn))
        with transaction(conn):
            _replace(conn)
    finally:
        conn.execute("DROP TABLE IF EXISTS temp.incoming")
        conn.execute("DROP TABLE IF EXISTS temp.old")
    return report, changes


def _count(conn: sqlite3.Connection) -> InputChanges:
    # `b`: the invalid line the same line held: a new line with an id the job never had, in
    # its place, is that line fixed (a line that did not parse had no id of its own).
    added, fixed, changed, failed, edited, broken = conn.execute(
        f"""SELECT
            sum(n.status = 'pending' AND o.key IS NULL AND b.line IS NULL),
            sum(n.status = 'pending' AND (o.error_type IS '{INVALID_INPUT}'
                OR (o.key IS NULL AND b.line IS NOT NULL))),
            sum({_EDITED} AND o.status = 'ok'),
            sum({_EDITED} AND o.status = 'error' AND o.error_type IS NOT '{INVALID_INPUT}'),
            sum({_EDITED} AND o.status = 'pending'),
            sum(n.status != 'pending' AND {_HAS_RESULT} AND NOT o.retired)
        FROM temp.incoming AS n LEFT JOIN temp.old AS o ON o.key = {_SHOWN_ID}
        LEFT JOIN items AS b ON b.line = n.line AND b.error_type IS '{INVALID_INPUT}'"""
    ).fetchone()
    # Each lookup by an index: the incoming ids, or the line a bad line's shown id names.
    disappeared, unsent = conn.execute(
        f"""SELECT sum({_HAS_RESULT}), sum(o.status = 'pending') FROM items AS o
        WHERE o.id IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM temp.incoming AS n WHERE n.id = o.id)
        AND NOT EXISTS (SELECT 1 FROM temp.incoming AS n WHERE n.line = CAST(o.id AS INTEGER)
            AND n.id IS NULL AND CAST(n.line AS TEXT) = o.id)"""
    ).fetchone()
    return InputChanges(
        added=added or 0,
        fixed=fixed or 0,
        changed=changed or 0,
        edited_failed=failed or 0,
        edited_pending=edited or 0,
        disappeared=disappeared or 0,
        unsent_gone=unsent or 0,
        broken=broken or 0,
    )


def _changed_examples(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    return conn.execute(
        f"""SELECT n.id, n.line FROM temp.incoming AS n JOIN temp.old AS o ON o.key = n.id
        WHERE {_EDITED} AND o.status = 'ok' ORDER BY n.line LIMIT ?""",
        (_EXAMPLES,),
    ).fetchall()


def _replace(conn: sqlite3.Connection) -> None:
    """The new items, each pending one carrying its old result where it has one for the same
    request; the results no item carries any more, retired."""
    # A kept result gets the metadata the line has now: metadata is passed through, not sent.
    keep = f"n.status = 'pending' AND {_HAS_RESULT} AND o.digest IS n.digest"
    result = (
        "CASE WHEN n.metadata IS o.metadata THEN o.result ELSE CAST(json_set(o.result,"
        " '$.metadata', json(coalesce(n.metadata, 'null'))) AS BLOB) END"
    )
    conn.execute("DELETE FROM items")
    conn.execute(
        f"""INSERT INTO items ({ITEM_COLUMNS}) SELECT
            n.line, n.id,
            CASE WHEN {keep} THEN o.status ELSE n.status END,
            n.output_fields,
            CASE WHEN {keep} THEN {result} ELSE n.result END,
            CASE WHEN {keep} THEN o.attempts ELSE 0 END,
            CASE WHEN {keep} THEN o.input_tokens ELSE 0 END,
            CASE WHEN {keep} THEN o.output_tokens ELSE 0 END,
            CASE WHEN {keep} THEN o.error_type ELSE n.error_type END,
            CASE WHEN {keep} THEN o.error_key ELSE n.error_key END,
            CASE WHEN {keep} THEN o.error_message ELSE n.error_message END,
            CASE WHEN {keep} THEN o.finished_at ELSE n.finished_at END,
            n.digest, n.metadata,
            CASE WHEN {keep} THEN o.cost_nanos END
        FROM temp.incoming AS n LEFT JOIN temp.old AS o ON o.key = {_SHOWN_ID}"""
    )
    # Retired: every old result no item shows now. A changed item sent again replaces its own.
    conn.execute("DELETE FROM retired")
    conn.execute(
        f"""INSERT INTO retired ({ITEM_COLUMNS}) SELECT {ITEM_COLUMNS} FROM temp.old AS o
        WHERE {_HAS_RESULT} AND NOT EXISTS
            (SELECT 1 FROM items AS i WHERE i.id = o.key AND i.error_type IS NOT '{INVALID_INPUT}')"""
    )
