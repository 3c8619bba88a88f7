"""Where a job's items and results live between runs: SQLite, one file beside the output."""

from llmgather.jobs.store.sqlite import JobStore, fingerprint_file, store_path_for

__all__ = ["JobStore", "fingerprint_file", "store_path_for"]
