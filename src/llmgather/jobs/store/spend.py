"""What a capped job spent (`--max-cost`), kept in its store so a resumed job goes on from what
was really spent, across runs and across a `kill -9`.

One row per attempt: its reservation (the worst case, in nano-dollars) written before it is
sent, its settlement (the real cost, or 0 for a 429) once known. An attempt that never got its
settlement (its answer never came, its usage is unknown, its process died) counts at its
reservation: it may have been billed. The job's spend is the sum.

    SPEND_SCHEMA                 the table
    record_spend(conn, ...)      reservations and settlements, one transaction (group commit)
    spent_nanos(conn)            the job's spend so far (at least its lines' cost)
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

__all__ = ["SPEND_SCHEMA", "record_spend", "spent_nanos"]

SPEND_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS spend (\n"
    "    attempt TEXT PRIMARY KEY,  -- the run, the item and its attempt\n"
    "    reserved INTEGER NOT NULL,  -- nano-dollars, the worst case\n"
    "    settled INTEGER  -- nano-dollars, the real cost; NULL: unknown, charged as reserved\n"
    ");\n"
)


def record_spend(
    conn: sqlite3.Connection,
    reserved: Sequence[tuple[str, int]],
    settled: Sequence[tuple[str, int]],
) -> None:
    """Write `reserved` (attempt, nano-dollars) rows, then `settled` ones, inside the caller's
    transaction. A settlement whose reservation is not there (written in a later batch, by
    the order of the calls) is written as its own row: never lost."""
    conn.executemany(
        "INSERT INTO spend (attempt, reserved) VALUES (?, ?) ON CONFLICT (attempt) DO NOTHING",
        reserved,
    )
    conn.executemany(
        "INSERT INTO spend (attempt, reserved, settled) VALUES (?1, ?2, ?2)"
        " ON CONFLICT (attempt) DO UPDATE SET settled = excluded.settled",
        settled,
    )


def spent_nanos(conn: sqlite3.Connection) -> int:
    """The job's spend in nano-dollars: each attempt's real cost, or its reservation; at least
    what its answered lines cost. Only a capped run writes the ledger: an uncapped run's
    answers (one interrupted, then rerun with a cap) count through their lines' cost."""
    (ledger,) = conn.execute("SELECT sum(coalesce(settled, reserved)) FROM spend").fetchone()
    (lines,) = conn.execute("SELECT sum(cost_nanos) FROM items WHERE status = 'ok'").fetchone()
    return max(int(ledger or 0), int(lines or 0))
