"""Job identity: what makes a rerun the same job (input bytes and parameters), and what changed.

A resumed job must have the same input file (by sha256) and the same parameters as the job that
wrote its store; otherwise the store raises JobMismatchError (in `_errors`) with every difference
these functions describe, secrets hidden.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

__all__ = ["describe_changes", "fingerprint_file"]

_SECRET_NAME = re.compile(r"key|secret|passw|credential|auth|bearer|token(?!s)", re.IGNORECASE)
_SECRET_VALUE = re.compile(r"^(sk-|sk_|AIza|xai-|Bearer\s)|://[^/@\s]+@", re.IGNORECASE)


def fingerprint_file(path: str) -> str:
    """The sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def describe_changes(meta: dict[str, Any], fingerprint: str, params: dict[str, Any]) -> list[str]:
    """How this input and these parameters differ from the job recorded in `meta`; [] if not."""
    changes = []
    old_fp = meta.get("fingerprint")
    if old_fp != fingerprint:
        changes.append(f"input file changed (sha256 {str(old_fp)[:12]}… now {fingerprint[:12]}…)")
    old_params = meta.get("params") or {}
    for key in sorted(set(old_params) | set(params)):
        before, after = old_params.get(key), params.get(key)
        if before != after:
            changes.append(
                f"parameter {key!r} was {_show_param(key, before)} now {_show_param(key, after)}"
            )
    return changes


def _show_param(key: str, value: Any) -> str:
    if value is None:
        return "unset"
    if _SECRET_NAME.search(key) or (isinstance(value, str) and _SECRET_VALUE.search(value)):
        return "(hidden)"
    text = orjson.dumps(value).decode()
    return text if len(text) <= 80 else text[:77] + "..."
