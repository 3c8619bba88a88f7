"""The projected cost of a job: what it spent, and the average priced answer for each item left.

    projected = spent + spent / priced answers × items not yet answered

Failed items cost nothing and are not in the average: an answer is what each pending item is
expected to cost. None until one answer is priced, when there is anything left to project.
"""

from __future__ import annotations

from decimal import Decimal

__all__ = ["projected_cost"]


def projected_cost(spent: Decimal, priced: int, left: int) -> Decimal | None:
    """The job's expected total in USD once its `left` items are answered."""
    if left <= 0:
        return spent
    if priced <= 0:
        return None
    return spent + spent / priced * left
