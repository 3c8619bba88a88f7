"""What a finished (or stopped) job reports: counts, tokens, errors, learned limits, what next.

Built from the job's store (the truth for every count) and its sender's engine statistics
(retries, 429s, the limits the provider announced or its 429s taught).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from llmgather._engine import EngineStats
from llmgather.jobs.store import JobStats

__all__ = [
    "CLI_TERMS",
    "ERROR_KEY_CHARS",
    "JobSummary",
    "RerunTerms",
    "next_steps",
    "shown_error",
    "summarise",
]

ERROR_KEY_CHARS = 80  # the store groups errors by their message cut to this length


@dataclass(frozen=True, kw_only=True)
class JobSummary:
    output: str
    target: str
    simulated: bool
    resumed: bool
    interrupted: bool
    total: int
    ok: int
    failed: int
    invalid: int
    pending: int
    sent: int
    retries: int
    http_429: int
    input_tokens: int
    output_tokens: int
    elapsed_s: float
    top_errors: list[dict[str, Any]]
    input: str = ""
    hint: str | None = None  # what to do next, when anything is left to do
    # Limits the provider announced in its answers' headers, or that its 429s taught where it
    # announced none, which paced the run where the user gave none (or gave a higher one), by
    # budget name ("rpm", "tpm", "itpm", "otpm"…); `learned_from` says which ("headers" or
    # "429s"). `overruled_limits`: the user's own limits a lower announced one replaced.
    learned_limits: dict[str, float] = field(default_factory=dict)
    learned_from: str | None = None
    overruled_limits: dict[str, float] = field(default_factory=dict)
    # The 429s that held every send on the key (most answers were 429s then); the others held
    # only their own item's retry.
    http_429_holds: int = 0
    # Requests sent again at once on a fresh connection after a pooled one closed before any
    # answer: in no item's `attempts`, and the server may have received both copies.
    resent: int = 0
    # The provider's message when a spent quota stopped the run (its items left pending).
    quota_spent: str | None = None
    # What changed since the last run: where the requests go, which items the input holds.
    changes: list[str] = field(default_factory=list)
    # What the ok lines cost in USD, the exact sum of their `cost`; `unpriced`: ok lines whose
    # model has no known price (cost null, not counted).
    cost_usd: float = 0.0
    unpriced: int = 0
    # Under a cost cap (`max_cost`, USD): what it counted spent over all the job's runs (each
    # answer's real cost; a send whose cost never came, at its reservation), and the items it
    # left unsent (error lines of type budget_exhausted; a rerun with a higher cap sends
    # exactly those).
    max_cost: float | None = None
    spent_usd: float | None = None
    unsent: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The --json summary, with each learned limit also as `learned_rpm`, `learned_tpm`…,
        to pass as `--rpm`, `--tpm`… next time."""
        flat = {f"learned_{name}": round(limit) for name, limit in self.learned_limits.items()}
        return {**self.__dict__, **flat}


def summarise(
    *,
    output: str,
    input: str,
    target: str,
    simulated: bool,
    resumed: bool,
    interrupted: bool,
    sent: int,
    final: JobStats,
    engine: EngineStats,
    elapsed_s: float,
    quota_spent: str | None = None,
    changes: list[str] | None = None,
    max_cost: float | None = None,
    spent_nanos: int | None = None,
) -> JobSummary:
    """The summary of a run that reached its store: counts from `final`, the rest from `engine`.
    `spent_nanos`: what a cost cap of `max_cost` USD counted spent (else: the lines' cost)."""
    spent = final.cost_usd if spent_nanos is None else Decimal(spent_nanos).scaleb(-9)
    return JobSummary(
        output=output,
        target=target,
        simulated=simulated,
        resumed=resumed,
        interrupted=interrupted,
        total=final.total,
        ok=final.done,
        failed=final.failed,
        invalid=final.invalid,
        pending=final.pending,
        sent=sent,
        retries=engine.retries,
        http_429=engine.http_429,
        input_tokens=final.input_tokens,
        output_tokens=final.output_tokens,
        elapsed_s=round(elapsed_s, 3),
        top_errors=[
            {"type": kind, "message": shown_error(message), "count": count}
            for kind, message, count in final.top_errors
        ],
        input=input,
        hint=next_steps(
            final.pending,
            final.failed,
            final.invalid,
            quota_spent=quota_spent,
            unsent=final.unsent,
        ),
        learned_limits=dict(engine.learned),
        learned_from=_learned_from(engine),
        overruled_limits=dict(engine.lowered),
        http_429_holds=engine.http_429_holds,
        resent=engine.resent,
        quota_spent=quota_spent,
        changes=list(changes or ()),
        cost_usd=float(final.cost_usd),
        unpriced=final.unpriced,
        max_cost=max_cost,
        spent_usd=None if max_cost is None else float(spent),
        unsent=final.unsent,
    )


def empty_summary(
    *, output: str, input: str, target: str, simulated: bool, elapsed_s: float
) -> JobSummary:
    """The summary of an input with no items and no job: nothing was sent, no store made."""
    return JobSummary(
        output=output,
        target=target,
        simulated=simulated,
        resumed=False,
        interrupted=False,
        total=0, ok=0, failed=0, invalid=0, pending=0, sent=0, retries=0, http_429=0,
        input_tokens=0, output_tokens=0,
        elapsed_s=round(elapsed_s, 3),
        top_errors=[],
        input=input,
    )  # fmt: skip


@dataclass(frozen=True)
class RerunTerms:
    """How a hint names a rerun and its switches: in the library's terms or the CLI's."""

    rerun: str
    retry_failed: str
    may_change: str
    higher_cap: str


LIBRARY_TERMS = RerunTerms(
    rerun="run the job again",
    retry_failed="with retry_failed=True",
    may_change="its base_url, limits and timeouts may change",
    higher_cap="run the job again with a higher max_cost",
)
CLI_TERMS = RerunTerms(
    rerun="rerun the same command",
    retry_failed="with --retry-failed",
    may_change="--base-url, limits and timeouts may change",
    higher_cap="rerun with a higher --max-cost",
)


def next_steps(
    pending: int,
    failed: int,
    invalid: int = 0,
    *,
    terms: RerunTerms = LIBRARY_TERMS,
    quota_spent: str | None = None,
    unsent: int = 0,
) -> str | None:
    """What to do next, saying exactly what each rerun sends: the pending items; the invalid
    lines once fixed in the input, with them; the failed items, with them, only when asked.
    `quota_spent`: the provider's message when a spent quota stopped the run; `unsent`: the
    items a spent cost cap left unsent."""
    hints = []
    if unsent:
        hints.append(
            f"The cost cap is spent: {_items(unsent)} left unsent. {_capitalised(terms.higher_cap)}"
            f" to send exactly {_those(unsent)}"
            + (f" and the {pending} pending" if pending else "")
            + " (each costs at most its worst case: prompt and max tokens)."
        )
        pending = 0  # said: sent with them
    with_pending = f", with the {pending} pending" if pending else ""
    if pending and quota_spent:
        hints.append(
            f"The provider's quota is spent ({shown_error(quota_spent)}): {_items(pending)} "
            f"left pending, not failed. Once the quota resets or is raised, {terms.rerun} to "
            f"send exactly {_those(pending)}."
        )
    elif pending:
        hints.append(
            f"{_items(pending)} still pending: {terms.rerun} to send exactly {_those(pending)}."
        )
    if invalid:
        lines = f"{invalid} input line{'s are' if invalid != 1 else ' is'} invalid"
        hints.append(
            f"{lines} (the error lines in the output name the line and field): fix "
            f"{'them' if invalid != 1 else 'it'} in the input and {terms.rerun}; each fixed "
            f"line is sent{with_pending}, and nothing else."
        )
    if failed:
        in_all = (
            f", and the {pending} pending with them: {pending + failed} requests in all"
            if pending
            else ""
        )
        hints.append(
            f"{_items(failed)} failed: once the cause is fixed ({terms.may_change}), "
            f"{terms.rerun} {terms.retry_failed} to send {_those(failed)} again{in_all}."
        )
    return _capitalised(" ".join(hints)) or None


def _items(count: int) -> str:
    return f"{count} item{'s' if count != 1 else ''}"


def _those(count: int) -> str:
    return f"those {count}" if count != 1 else "that one"


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def shown_error(message: str) -> str:
    """An error message as the store groups it, cut at a word boundary if it was cut at all."""
    if len(message) < ERROR_KEY_CHARS:
        return message
    head, space, _ = message.rpartition(" ")
    if not space or len(head) < ERROR_KEY_CHARS // 2:  # one long word: cut it where it is
        head = message
    return head.rstrip(" ,;") + "…"


def _learned_from(stats: EngineStats) -> str | None:
    if stats.found:
        return "429s"
    return "headers" if stats.learned else None
