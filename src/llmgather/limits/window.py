"""A sliding window as pure arithmetic over a clock reading: no I/O, no sleeping.

At most `capacity` units in any `window` seconds. Nothing paces the units within the window: a
day's 1,500 requests go out as fast as the other limits allow, then the next waits until the
first of them is a day old. A window that slides obeys a provider's limit per calendar day
whatever its time zone (Gemini resets at midnight Pacific time): any calendar day is one of the
spans it bounds.

What was taken is kept per slot of `window / slots` seconds (a minute, for a day), each slot
leaving the window a full window after the last take in it: memory stays bounded by the slot
count, and a unit leaves at most one slot late, never early.

As with `TokenBucket`, a take larger than the capacity is admitted when the window is empty.
"""

from __future__ import annotations

from collections import deque


class _Slot:
    __slots__ = ("amount", "first", "last")

    def __init__(self, now: float, amount: float) -> None:
        self.first = now
        self.last = now
        self.amount = amount


class SlidingWindow:
    """`capacity` units per `window` seconds, all of them available at once."""

    __slots__ = ("_slot_s", "_slots", "_total", "capacity", "window")

    def __init__(self, *, capacity: float, window: float, slots: int = 1440) -> None:
        if capacity <= 0 or window <= 0 or slots < 1:
            raise ValueError("capacity, window and slots must be positive")
        self.capacity = capacity
        self.window = window
        self._slot_s = window / slots
        self._slots: deque[_Slot] = deque()
        self._total = 0.0

    def used(self, now: float) -> float:
        self._expire(now)
        return self._total

    def wait_time(self, now: float, amount: float) -> float:
        """Seconds until `amount` can be taken (0.0 if it can be taken now)."""
        self._expire(now)
        excess = self._total + min(amount, self.capacity) - self.capacity
        if excess <= 1e-9:
            return 0.0
        freed = 0.0
        for slot in self._slots:
            freed += slot.amount
            if freed >= excess - 1e-9:
                return slot.last + self.window - now
        return self._slots[-1].last + self.window - now  # only after give-backs went negative

    def take(self, now: float, amount: float) -> None:
        self._expire(now)
        newest = self._slots[-1] if self._slots else None
        if newest is not None and now - newest.first < self._slot_s:
            newest.amount += amount
            newest.last = max(newest.last, now)
        else:
            self._slots.append(_Slot(now, amount))
        self._total += amount

    def give_back(self, now: float, amount: float, *, taken_at: float) -> None:
        """Return an over-reservation taken at `taken_at` (or charge an under-estimate).

        A take that has left the window already has nothing left to return or charge.
        """
        self._expire(now)
        for slot in reversed(self._slots):
            if slot.first <= taken_at <= slot.last:
                change = min(amount, slot.amount)
                slot.amount -= change
                self._total -= change
                return

    def time_to_empty(self, now: float) -> float:
        self._expire(now)
        return self._slots[-1].last + self.window - now if self._slots else 0.0

    def _expire(self, now: float) -> None:
        slots = self._slots
        while slots and slots[0].last + self.window <= now:
            self._total -= slots.popleft().amount
        if not slots:
            self._total = 0.0  # no float residue once the window is empty

    def __repr__(self) -> str:
        return (
            f"<SlidingWindow {self._total:.2f}/{self.capacity:.2f} per {self.window:g}s "
            f"in {len(self._slots)} slots>"
        )
