"""Job identity: what makes a rerun the same job, and what a rerun may change and report.

A job is its parameters that decide every answer (the provider and model as resolved, the
request defaults, `stream`, the system prompt: `JobOptions.params`) and its items, each known
by its id and what is sent for it (`jobs.store.merge`). A rerun with other parameters is
refused (JobMismatchError, in `_errors`) with every difference described here, secrets
hidden; its route (`JobOptions.route`: where the requests go, how the input is read) may
change, and the run's summary says how. The input file's sha256 tells a rerun on the same
bytes, which has nothing to merge, from one on an edited file.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

__all__ = ["SENDING_ROUTE", "describe_changes", "describe_route_changes", "fingerprint_file"]

# The part of a route that says where requests go, not how the input is read: a change of
# it changes no item, so it never makes a rerun read its input again.
SENDING_ROUTE = frozenset({"base_url", "prices"})
_ROUTE_NAMES = {
    "base_url": "base URL",
    "format": "input format",
    "column": "column",
    "prices": "price source",
}

_SECRET_NAME = re.compile(r"key|secret|passw|credential|auth|bearer|token(?!s)", re.IGNORECASE)
_SECRET_VALUE = re.compile(r"^(sk-|sk_|AIza|xai-|Bearer\s)|://[^/@\s]+@", re.IGNORECASE)


def fingerprint_file(path: str) -> str:
    """The sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def describe_changes(old: dict[str, Any], params: dict[str, Any]) -> list[str]:
    """How `params` differ from the job's recorded ones (`old`); [] if not. Only the names
    `params` has count: a store an older llmgather made recorded its route among them."""
    return [
        f"parameter {key!r} was {_show(key, old.get(key))} now {_show(key, params[key])}"
        for key in sorted(params)
        if old.get(key) != params[key]
    ]


def describe_route_changes(old: dict[str, Any], route: dict[str, Any]) -> list[str]:
    """How this run's route differs from the last run's, in words for its summary."""
    return [
        f"{_ROUTE_NAMES.get(key, key.replace('_', ' '))} changed from {_show(key, old.get(key))}"
        f" to {_show(key, route[key])}"
        for key in sorted(route)
        if old.get(key) != route[key]
    ]


def _show(key: str, value: Any) -> str:
    if value is None:
        return "unset"
    if _SECRET_NAME.search(key) or (isinstance(value, str) and _SECRET_VALUE.search(value)):
        return "(hidden)"
    text = orjson.dumps(value).decode()
    return text if len(text) <= 80 else text[:77] + "..."
