"""What `RedisLimiter` last saw of the shared state: every script replies with it (see
`limits.redis_scripts.snapshot`), and `statistics()` reads it without asking Redis."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

FOUND = "found:"
FOUND_UNTIL = "found_until:"


@dataclass(slots=True)
class Snapshot:
    """The shared state as the last script saw it, at `redis_now` on Redis's clock and
    `local_now` on this process's."""

    redis_now: float = 0.0
    local_now: float = 0.0
    in_flight: int = 0
    paused_until: float = 0.0
    penalties: int = 0
    announced: dict[str, float] = field(default_factory=dict)
    found: dict[str, float] = field(default_factory=dict)  # paces 429s taught
    found_until: dict[str, float] = field(default_factory=dict)  # when each stops holding

    @classmethod
    def from_reply(cls, reply: list[str], local_now: float, extra: int) -> Snapshot:
        """The reply's snapshot; its `extra` values after the shared state are the script's
        own, then come the stored limits as name, value pairs."""
        snapshot = cls(
            redis_now=float(reply[0]),
            local_now=local_now,
            in_flight=int(reply[1]),
            paused_until=float(reply[2]),
            penalties=int(reply[3]),
        )
        pairs = reply[4 + extra :]
        for i in range(0, len(pairs) - 1, 2):
            name, value = pairs[i], float(pairs[i + 1])
            if name.startswith(FOUND_UNTIL):
                snapshot.found_until[name.removeprefix(FOUND_UNTIL)] = value
            elif name.startswith(FOUND):
                snapshot.found[name.removeprefix(FOUND)] = value
            else:
                snapshot.announced[name] = value
        return snapshot

    def redis_time(self, local_now: float) -> float:
        """Redis's clock now, from this process's."""
        return self.redis_now + (local_now - self.local_now)

    def pacing(
        self, yours: Mapping[str, float | None], redis_now: float
    ) -> tuple[dict[str, float], dict[str, float]]:
        """The stored limits that pace below the user's own (`yours`), by name: all of them,
        and those of them 429s taught (a found pace that still holds, below any announced)."""
        paces = {
            name: limit
            for name, limit in self.announced.items()
            if name in yours and ((mine := yours[name]) is None or limit < mine)
        }
        found: dict[str, float] = {}
        for name, pace in self.found.items():
            holds = self.found_until.get(name, 0.0) > redis_now
            lower = name not in paces or pace < paces[name]
            if name in yours and holds and lower and ((mine := yours[name]) is None or pace < mine):
                found[name] = paces[name] = pace
        return paces, found
