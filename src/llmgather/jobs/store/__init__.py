"""Where a job's items and results live between runs: the JobStore protocol, and SQLite.

A store records and reads results and knows what is pending; it never writes the user's output
file (`jobs.output` does, from `finished_rows`). `SQLiteJobStore` keeps one file beside the
output; a store shared by workers on several machines implements the same protocol
(`jobs.store.base`).
"""

from __future__ import annotations

from llmgather.jobs.identity import fingerprint_file
from llmgather.jobs.store.base import JobStore
from llmgather.jobs.store.ingest import IngestReport
from llmgather.jobs.store.sqlite import SQLiteJobStore, store_path_for
from llmgather.jobs.store.stats import JobStats

__all__ = [
    "IngestReport",
    "JobStats",
    "JobStore",
    "SQLiteJobStore",
    "fingerprint_file",
    "store_path_for",
]
