"""Unknown fields of JSON input lines: a warning once per field name, with the closest known one.

A misspelt field (`max_token`) is otherwise silently ignored and the run goes on without the
setting the user meant; one warning per name, at its first line, says so without flooding.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection
from typing import Any

__all__ = ["UnknownFields"]

_NAME_CHARS = 60  # an unknown name longer than this is shown (and matched) cut short
_MOST_NAMES = 20  # distinct names warned about; a file of made-up names does not flood stderr


class UnknownFields:
    """Calls `warn` once per unknown field name, naming the file, its first line and a close match."""

    def __init__(self, source: str, warn: Callable[[str], None]) -> None:
        self._source = source
        self._warn = warn
        self._seen: set[str] = set()
        self._full = False

    def check(self, obj: dict[str, Any], known: Collection[str], line: int) -> None:
        for name in obj:
            if name in known or name in self._seen:
                continue
            if len(self._seen) >= _MOST_NAMES:
                if not self._full:
                    self._full = True
                    self._warn(
                        f"{self._source}:{line}: more unknown fields; "
                        f"only the first {_MOST_NAMES} names are reported"
                    )
                return
            self._seen.add(name)
            shown = name if len(name) <= _NAME_CHARS else name[: _NAME_CHARS - 3] + "..."
            close = difflib.get_close_matches(shown, sorted(known), n=1, cutoff=0.6)
            hint = (
                f'did you mean "{close[0]}"?'
                if close
                else f"the fields read are: {', '.join(sorted(known))}"
            )
            self._warn(
                f'{self._source}:{line}: unknown field "{shown}" is ignored ({hint}); '
                "later lines with it are not reported"
            )
