"""Whether a 429 speaks for the whole key: the share of 429s among the latest answers.

A key whose budget is empty refuses every request until it refills, so most answers are 429s,
and holding every send for the server's Retry-After (or a cool-down) costs nothing that would
have succeeded. A 429 now and then among answers that succeed (a model overloaded for some
requests, a gateway passing on an upstream's overload) says nothing of the other requests:
holding them all for it stalls a run, so it holds only its own request (its retry waits), and
the pace search (`limits.discovery`) judges whether a rate limit lies behind such 429s.

Pure counting, no clock: the engine feeds it each answer that says anything about the key's
budget (a success or a 429; other failures say nothing of it).
"""

from __future__ import annotations

from collections import deque

RECENT = 10  # answers looked back on
HOLD_SHARE = 0.5  # of them 429s (the one in hand included) for a 429 to hold the key


class RecentRefusals:
    """The latest `RECENT` answers, as 429 or not."""

    __slots__ = ("_recent",)

    def __init__(self) -> None:
        self._recent: deque[bool] = deque(maxlen=RECENT)

    def answered(self, *, limited: bool) -> None:
        self._recent.append(limited)

    def holds_key(self) -> bool:
        """Whether a 429 arriving now should hold every send: most of the latest answers,
        this one included, are 429s (the first answer of all, a 429, is all there is)."""
        recent = self._recent
        limited = sum(recent) + 1
        return limited >= HOLD_SHARE * (len(recent) + 1)

    def __repr__(self) -> str:
        return f"<RecentRefusals {sum(self._recent)}/{len(self._recent)} were 429s>"
