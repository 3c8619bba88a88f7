"""A limiter shared through Redis: every process, on any machine, that names the same Redis and
key spends one set of budgets, holds one concurrency cap and obeys one pause after a 429.

    RedisLimiter("redis://127.0.0.1:6379/0", Limits(rpm=1200, tpm=400_000), key="org-key")

Each decision is one Lua script run atomically in Redis (`limits.redis_scripts`): a send checks
every budget and reserves its cost from all of them at once, with the same arithmetic as
`LocalLimiter`, so the two pass one contract suite. What is specific to sharing:

- **Time** is Redis's own `TIME`: one clock for every machine.
- **Concurrency** is a set of leases that expire: each process renews its own while it lives, so
  the slots of a killed process free themselves within `lease_seconds`.
- **Waiting.** Inside a process the callers queue first come, first served, and only the head
  asks Redis. What time refills is waited for exactly; a slot another process frees is seen
  within `poll_seconds` (no event crosses processes).
- **A 429** anywhere pauses every process (for its Retry-After, or a cool-down that doubles
  with each wave), counted once even when a lost reply makes the call run twice;
  **announced limits** are stored once and paced by all; a rate the 429s taught where nothing
  is announced (`limits.discovery`) is shared too, but apart from them and for
  `FOUND_PACE_HOLDS_S` only: the process that found it renews it while it runs, so a later
  run on the key is not held for ever to a guess nobody revises.
- **Redis lost.** Each call is retried a few times, then `RedisUnavailableError`: a send is
  never made without its reservation. A cancelled wait whose grant raced the cancellation gives
  the grant back; `aclose` waits for such give-backs (a bounded while) rather than drop them.

The user's limits travel with each call rather than living in Redis: processes told different
limits each hold to their own on the shared spending.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from llmgather._clock import Clock, SystemClock
from llmgather._config import Limits
from llmgather._errors import BudgetExhaustedError, RedisUnavailableError
from llmgather._redact import redact_url
from llmgather._redis import connect, retried
from llmgather._types import Usage, remaining_key
from llmgather.limits.base import Cost, Ending, LimiterStats, Permit
from llmgather.limits.budgets import CAP, KINDS, KINDS_BY_NAME, Kind, below_yours
from llmgather.limits.concurrency import ConcurrencyCap
from llmgather.limits.discovery import LimitSearch
from llmgather.limits.local import DEFAULT_COOL_DOWN, DEFAULT_MAX_COOL_DOWN
from llmgather.limits.redis_scripts import ACQUIRE, LEARN, OBSERVE, PENALISE, RELEASE, RENEW
from llmgather.limits.redis_snapshot import Snapshot
from llmgather.limits.waiting import Wakeup
from llmgather.providers.registry import Target

logger = logging.getLogger("llmgather")
T = TypeVar("T")

DEFAULT_LEASE_S = 30.0
DEFAULT_POLL_S = 0.05
# A Redis call that fails this often in a row (over about 3 s: a restart fits) gives up.
CALL_ATTEMPTS = 6
# How long a pace the 429s taught holds in Redis after it was last stored: its finder stores it
# again at each change, and before it runs out while it still paces by it; once no process
# does, the key is searched afresh rather than held to an old guess.
FOUND_PACE_HOLDS_S = 120.0
# How long `aclose` waits for the grants a cancelled wait gives back (a Redis call, retried).
GIVE_BACK_WAIT_S = 5.0


class RedisLimiter:
    """The `Limiter` for processes that share a key: give each the same `url` and `key`.

    `key` names the shared budgets (an API key's label: processes that use one provider key
    should use one `key`; see `limiter_key_for`). `clock` is for tests: given one, its time is
    used instead of Redis's. The client library `redis` comes with `pip install
    'llmgather[redis]'`.
    """

    def __init__(
        self,
        url: str,
        limits: Limits | None = None,
        *,
        key: str = "default",
        clock: Clock | None = None,
        cool_down: float = DEFAULT_COOL_DOWN,
        max_cool_down: float = DEFAULT_MAX_COOL_DOWN,
        lease_seconds: float = DEFAULT_LEASE_S,
        poll_seconds: float = DEFAULT_POLL_S,
        discover: bool = True,
    ) -> None:
        if not 0 < cool_down <= max_cool_down:
            raise ValueError("cool_down must be positive and at most max_cool_down")
        self.url = url
        self.key = key
        self.limits = limits or Limits()
        self._clock = clock or SystemClock()
        self._fixed_time = clock is not None
        self._cool_down = cool_down
        self._max_cool_down = max_cool_down
        self._lease_s = lease_seconds
        self._poll_s = poll_seconds
        prefix = f"llmgather:{{{key}}}"  # one hash slot: a cluster keeps the keys together
        self._keys = [f"{prefix}:state", f"{prefix}:leases", f"{prefix}:day", f"{prefix}:day:n"]
        self._keys += [f"{prefix}:penalty-ids", f"{prefix}:cap-leases"]
        self._redis: Any = connect(url, what="--limiter")  # connects on first use
        self._scripts: dict[str, Any] = {}
        self._lease_ids = (f"{uuid.uuid4().hex[:12]}:{n}" for n in itertools.count())
        self._held: set[str] = set()  # this process's leases, renewed while it lives
        self._renewer: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._gate = asyncio.Lock()
        self._wakeup = Wakeup(self._clock)
        self._cap = ConcurrencyCap(self.limits.concurrency)
        self._local_in_flight = 0
        self._waiting_on: str | None = None
        self._io = 0  # Redis calls under way, and finished: the tests' fake clock waits for them
        self._io_done = 0
        self._snapshot = Snapshot()
        told_nothing = discover and not any(
            getattr(self.limits, k.name) for k in KINDS if not k.capped
        )
        self._search = (
            LimitSearch(self.limits.concurrency, now=self._clock.now()) if told_nothing else None
        )
        self._found_rpm: float | None = None  # the rate this process's 429s taught, if any
        self._lowered_told: set[str] = set()  # budgets a lower announced limit replaced, told once

    # -- the protocol -------------------------------------------------------------------------

    async def acquire(self, cost: Cost = Cost()) -> Permit:  # noqa: B008 (frozen: shared is fine)
        async with self._gate:
            try:
                while True:
                    window = self._search.window if self._search is not None else None
                    if window is not None and self._local_in_flight >= window:
                        self._waiting_on = "concurrency"  # slow start: a clean answer opens it
                        await self._wakeup.poked()
                        continue
                    lease = next(self._lease_ids)
                    reply = await self._acquire_once(cost, lease)
                    if reply[4] == "1":
                        return self._granted(cost, lease, float(reply[0]))
                    if reply[4] == "x":
                        raise self._exhausted(cost, spent=int(float(reply[6])))
                    self._waiting_on, wait = reply[5], float(reply[6])
                    if self._waiting_on == "rpm" and self._search is not None:
                        self._search.held()
                    if self._waiting_on in ("concurrency", CAP):
                        # A release here or elsewhere frees a slot, or money a reservation held.
                        await self._wakeup.poked_or(self._poll_s)
                    elif self._waiting_on == "pause":
                        await self._clock.sleep(wait)  # nothing but time ends a pause early
                    else:
                        await self._wakeup.poked_or(wait)
            finally:
                self._waiting_on = None

    async def release(self, permit: Permit, usage: Usage | None, *, outcome: Ending = "ok") -> None:
        self._local_in_flight -= 1
        self._held.discard(permit.lease)
        settled = self._settlements(permit.cost, usage)
        try:
            await self._call(
                RELEASE,
                [permit.lease, outcome, repr(permit.granted_at)],
                self._budget_args(settled),
            )
        except RedisUnavailableError as error:
            # The reservation stands (the safe side) and the lease expires by itself.
            logger.warning("llmgather: %s; a permit's settlement is lost", error)
        if outcome == "ok":
            self._cap.succeeded(permit.wave)
        elif outcome == "truncated":
            self._cap.truncated(permit.wave)
        if self._search is not None and self._search.searching:
            await self._search_after(permit, outcome)
        waiting_on = self._waiting_on
        if waiting_on in ("concurrency", CAP) or (settled and waiting_on in settled):
            self._wakeup.poke()

    async def penalise(self, retry_after: float | None) -> None:
        retry = "" if retry_after is None else repr(float(retry_after))
        # One id per penalty: a call run again after its reply was lost counts it once.
        args = [uuid.uuid4().hex, retry, repr(self._cool_down), repr(self._max_cool_down)]
        try:
            await self._call(PENALISE, args)
        except RedisUnavailableError as error:
            # The answer in hand is not lost for it; the next acquire meets the outage.
            logger.warning("llmgather: %s; a 429 was not shared", error)

    async def observe(self, announced: Mapping[str, float]) -> None:
        args: list[str] = [repr(self.limits.burst_seconds)]
        lowered: list[tuple[str, float, float]] = []
        for kind in KINDS:
            limit = announced.get(kind.name)
            if not limit or limit <= 0:
                continue
            # The user's own limit is a ceiling: a lower announced one paces instead (the
            # scripts take the lower of the two), and one above it is stored only to end a
            # lower one stored before.
            remaining = announced.get(remaining_key(kind.name))
            yours = getattr(self.limits, kind.name)
            if yours is not None and limit >= yours:
                stored = self._snapshot.announced.get(kind.name)
                if stored is None or stored >= yours:
                    continue
                remaining = None  # what is left of a limit that does not pace here
            elif yours is not None:
                lowered.append((kind.name, limit, yours))
            args += [
                *_kind_args(kind),
                repr(float(limit)),
                "" if remaining is None else repr(remaining),
            ]
        if len(args) == 1:
            return
        try:
            reply = await self._call(OBSERVE, args, extra=1)
        except RedisUnavailableError as error:
            logger.warning("llmgather: %s; announced limits not shared", error)
            return
        for name, limit, yours in lowered:
            if name not in self._lowered_told:
                self._lowered_told.add(name)
                logger.warning("llmgather: %s", below_yours(name, limit, yours))
        paced = any(KINDS_BY_NAME[args[i]].paced for i in range(1, len(args), 5))
        if reply[4] == "1":
            if self._search is not None and self._search.searching and paced:
                # The budgets know better than any search; a day's limit says nothing of the
                # pace a minute allows.
                self._search.announced()
                self._found_rpm = None
            self._wakeup.poke()

    def statistics(self) -> LimiterStats:
        snap = self._snapshot
        redis_now = snap.redis_time(self._clock.now())
        yours = {k.name: getattr(self.limits, k.name) for k in KINDS}
        announced, found = snap.pacing(yours, redis_now)
        limits = {
            k.name: announced.get(k.name) or yours[k.name]
            for k in KINDS
            if yours[k.name] is not None or k.name in announced
        }
        window = self._search.window if self._search is not None else None
        return LimiterStats(
            in_flight=snap.in_flight,
            concurrency=self._cap.current if window is None else min(window, self._cap.current),
            max_concurrency=self._cap.maximum,
            limits=limits,
            learned=announced,
            pause_remaining=max(0.0, snap.paused_until - redis_now),
            penalties=snap.penalties,
            waiting_on=self._waiting_on,
            found=found,
            lowered={
                name: yours[name]
                for name in announced
                if yours[name] is not None and name not in found
            },
        )

    # -- lifetime -------------------------------------------------------------------------------

    async def check(self) -> None:
        """Raise `RedisUnavailableError` now if Redis does not answer (before any send)."""
        redis_client = self._connect()
        await self._retried(redis_client.ping)

    async def aclose(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
        # A grant a cancelled wait gives back is given back before the connection goes (else
        # its reservation and lease stand until the lease expires), a bounded while.
        background = list(self._background)
        if background:
            _, late = await asyncio.wait(background, timeout=GIVE_BACK_WAIT_S)
            for task in late:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
            self._scripts.clear()

    async def __aenter__(self) -> RedisLimiter:
        await self.check()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- inside -----------------------------------------------------------------------------------

    async def _acquire_once(self, cost: Cost, lease: str) -> list[str]:
        cap = self._cap.current
        args = [str(cap), lease, repr(self._lease_s), repr(self.limits.burst_seconds)]
        amounts = {k.name: k.reserve(cost) for k in KINDS}
        call = asyncio.ensure_future(self._call(ACQUIRE, args, self._budget_args(amounts), extra=3))
        try:
            return await asyncio.shield(call)
        except asyncio.CancelledError:
            # "Cancelling the wait takes nothing": a grant that raced the cancel is given back.
            self._in_background(self._give_back_if_granted(call, cost, lease))
            raise

    async def _give_back_if_granted(
        self, call: asyncio.Future[list[str]], cost: Cost, lease: str
    ) -> None:
        reply = await call
        if reply[4] == "1":
            whole = {k.name: k.reserve(cost) for k in KINDS}
            await self._call(RELEASE, [lease, "failed", reply[0]], self._budget_args(whole))

    def _exhausted(self, cost: Cost, *, spent: int) -> BudgetExhaustedError:
        kind = KINDS_BY_NAME[CAP]
        cap = round(kind.scaled(self.limits.max_cost or 0.0))
        return BudgetExhaustedError(
            spent=spent, cap=cap, needed=kind.reserve(cost), scale=kind.scale
        )

    def _granted(self, cost: Cost, lease: str, granted_at: float) -> Permit:
        self._local_in_flight += 1
        self._held.add(lease)
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.ensure_future(self._renew_leases())
        if self._search is not None:
            self._search.granted(self._clock.now())
        return Permit(cost, granted_at=granted_at, wave=self._cap.wave, lease=lease)

    def _settlements(self, cost: Cost, usage: Usage | None) -> dict[str, int]:
        """What each budget gives back (negative: charges) once the real usage is known."""
        if usage is None:
            return {}
        found = {}
        for kind in KINDS:
            surplus = kind.reserve(cost) - kind.settle(cost, usage)
            if surplus:
                found[kind.name] = surplus
        return found

    def _budget_args(self, amounts: Mapping[str, int]) -> list[str]:
        args: list[str] = []
        for kind in KINDS:
            if kind.name in amounts:
                limit = getattr(self.limits, kind.name)
                limit = None if limit is None else kind.scaled(float(limit))
                args += [*_kind_args(kind), "" if limit is None else repr(limit)]
                args.append(str(amounts[kind.name]))
        return args

    async def _search_after(self, permit: Permit, outcome: Ending) -> None:
        assert self._search is not None
        search, now = self._search, self._clock.now()
        rate: float | None = None
        empty = False
        snap = self._snapshot  # the grant's time on this process's clock
        granted_at = permit.granted_at - (snap.redis_now - snap.local_now)
        if outcome == "ok":
            if search.answered(granted_at) and self._waiting_on == "concurrency":
                self._wakeup.poke()
            rate = search.clean(now)
        elif outcome == "limited":
            before = search.found
            rate = search.limited(now, granted_at)
            empty = before is None or (rate is not None and rate < before)
            if rate is None and before is not None and search.found is None:
                rate = 0.0  # the 429s were noise: the pace they set is lifted (stored as 0)
        if rate is None:
            self._renew_found_pace()
            return
        self._found_rpm = rate or None
        # After a 429 the server's budget is empty now, so is ours; a restored pace is not.
        await self._store_found_pace(rate, remaining="0" if empty and rate else "")
        self._wakeup.poke()

    async def _store_found_pace(self, rate: float, *, remaining: str = "") -> None:
        rpm = KINDS_BY_NAME["rpm"]
        args = [repr(self.limits.burst_seconds), repr(FOUND_PACE_HOLDS_S), *_kind_args(rpm)]
        await self._call(LEARN, [*args, repr(rate), remaining])

    def _renew_found_pace(self) -> None:
        """The pace this process found, stored again before it runs out while it still paces
        by it (and no other process stored another meanwhile)."""
        found, snap = self._found_rpm, self._snapshot
        if found is None or snap.found.get("rpm") != found:
            return
        if snap.found_until.get("rpm", 0.0) - snap.redis_now > FOUND_PACE_HOLDS_S / 2:
            return
        snap.found_until["rpm"] = snap.redis_now + FOUND_PACE_HOLDS_S  # asked once
        self._in_background(self._store_found_pace_quietly(found))

    async def _store_found_pace_quietly(self, rate: float) -> None:
        try:
            await self._store_found_pace(rate)
        except RedisUnavailableError as error:
            logger.warning("llmgather: %s; the pace found was not renewed", error)

    async def _renew_leases(self) -> None:
        """Keep this process's leases alive; a process that dies stops, and its slots free."""
        while self._held:
            await self._clock.sleep(self._lease_s / 3)
            if not self._held:
                return
            try:
                await self._call(RENEW, [repr(self._lease_s), *self._held])
            except RedisUnavailableError as error:
                logger.warning("llmgather: %s; leases not renewed", error)

    def _in_background(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _call(
        self, script: str, args: Sequence[str], budgets: Sequence[str] = (), *, extra: int = 0
    ) -> list[str]:
        """Run `script` (the time first, then `args` and `budgets`) and keep the snapshot it
        returns, whose `extra` values after the shared state are the script's own."""
        runner = self._scripts.get(script)
        if runner is None:
            runner = self._scripts[script] = self._connect().register_script(script)
        local_now = self._clock.now()
        now = repr(local_now) if self._fixed_time else ""
        reply = await self._retried(lambda: runner(keys=self._keys, args=[now, *args, *budgets]))
        decoded = [x.decode() if isinstance(x, bytes) else str(x) for x in reply or ()]
        if decoded:
            self._absorb(decoded, local_now, extra)
        return decoded

    async def _retried(self, call: Callable[[], Awaitable[T]]) -> T:
        self._io += 1
        try:
            return await retried(call, self.url, attempts=CALL_ATTEMPTS)
        finally:
            self._io -= 1
            self._io_done += 1

    def _absorb(self, reply: list[str], local_now: float, extra: int) -> None:
        """Keep what a script saw of the shared state, for `statistics`."""
        self._snapshot = snapshot = Snapshot.from_reply(reply, local_now, extra)
        if self._search is not None and self._search.window is not None and self._found_rpm is None:
            # Another process was told the limits: no slow start. A pace another process's
            # 429s taught does not end this one's search: it paces meanwhile, and this search
            # finds the key's pace again once it runs out.
            if any(
                KINDS_BY_NAME[name].paced for name in snapshot.announced if name in KINDS_BY_NAME
            ):
                self._search.announced()

    def _connect(self) -> Any:
        if self._redis is None:
            self._redis = connect(self.url, what="--limiter")
        return self._redis

    def __repr__(self) -> str:
        return f"<RedisLimiter {redact_url(self.url)} key={self.key!r}>"


def _kind_args(kind: Kind) -> list[str]:
    if kind.capped:
        return [kind.name, "0", "2"]  # a cap has no window
    return [kind.name, repr(kind.window), "1" if kind.paced else "0"]


def limiter_key_for(target: Target) -> str:
    """The default shared key: one per provider, model, endpoint and API key (a digest of
    those two, never the key itself), as providers count their limits per key and model."""
    secret = f"{target.base_url or ''}\n{target.api_key or ''}".encode()
    return f"{target.provider}:{target.model}:{hashlib.sha256(secret).hexdigest()[:12]}"
