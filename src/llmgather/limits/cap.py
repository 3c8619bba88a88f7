"""A cap, not a rate: a total that may be spent once (`--max-cost`), with no window and no refill.

Counted in integer units (nano-dollars for the cost cap), so local and Redis agree exactly.
Each send reserves its worst case; `settle` gives back what the real usage did not spend;
`close` ends the reservation (settled or not: an answer whose usage is unknown keeps it all).
A reservation that does not fit waits while others are still outstanding (they may give
money back), and is refused once none is (`exhausted`): nothing could ever free room.
"""

from __future__ import annotations

__all__ = ["Cap"]


class Cap:
    """`capacity` units in all; `used` counts what is spent or reserved, `outstanding` the
    reservations not yet closed (the part of `used` that may still come back)."""

    __slots__ = ("capacity", "exhausted", "outstanding", "used")

    def __init__(self, capacity: int, *, used: int = 0) -> None:
        if capacity < 0 or used < 0:
            raise ValueError("a cap and what was spent of it cannot be negative")
        self.capacity = capacity
        self.used = used
        self.outstanding = 0
        self.exhausted = False  # once refused, refused for good: nothing more is sent

    def fits(self, amount: int) -> bool:
        return not self.exhausted and self.used + amount <= self.capacity

    def may_free(self) -> bool:
        """Whether a reservation still open may give room back."""
        return self.outstanding > 0

    def take(self, amount: int) -> None:
        self.used += amount
        self.outstanding += amount

    def settle(self, surplus: int) -> None:
        """What the real usage did not spend comes back (negative: it spent more)."""
        self.used = max(0, self.used - surplus)

    def close(self, reserved: int) -> None:
        self.outstanding = max(0, self.outstanding - reserved)

    def remaining(self) -> int:
        return max(0, self.capacity - self.used)

    def __repr__(self) -> str:
        state = " exhausted" if self.exhausted else ""
        return f"<Cap {self.used}/{self.capacity} outstanding={self.outstanding}{state}>"
