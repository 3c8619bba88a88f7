"""Durable runs of any async callable: `run_job(fn, input, output)` over a file of JSON objects.

    input JSONL ─▶ one JSON object a line ─▶ fn(object) through an engine (limits, retries)
                                          ─▶ the job's store, each result committed as it arrives
                                          ─▶ output JSONL: run's envelope, plus `value`

It is `llmgather run`'s own `Job` (the same store, resume, output and signals); only what an
item is (`CallJobOptions`: a line is the callable's input, not a prompt) and where it goes
(`CallSender`: an engine of its own that runs each call under its permit) differ.

A call runs with its permit held (`_callables.PERMIT_HELD`), so a `ChatLLMGather` inside a chain
sends at once instead of spending from a limiter of its own as well: the job's limits are the
ones that bind, and the job's retries the ones that retry.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Mapping,
)
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from llmgather._callables import AsyncCallable, CallRequest, CostOf, default_cost
from llmgather._config import Limits, limits_given
from llmgather._engine import Engine, EngineStats
from llmgather._errors import ConfigurationError
from llmgather._redact import Redactor
from llmgather._retry import RetryPolicy
from llmgather._sdk_errors import priced_as, text_from_sdk
from llmgather._types import Outcome, Request, Result
from llmgather.jobs.inputs import InputItem
from llmgather.jobs.inputs.objects import read_objects
from llmgather.jobs.job import Job
from llmgather.jobs.options import InputOptions, JobFlags
from llmgather.jobs.summary import JobSummary
from llmgather.jobs.values import json_fragment
from llmgather.limits import Limiter
from llmgather.limits.local import own_or_shared
from llmgather.pricing import STANDARD, Pricer, Prices, chain
from llmgather.providers.registry import Target, secrets_redactor

__all__ = ["CallJobOptions", "CallSender", "callable_name", "run_job"]


@dataclass(frozen=True, kw_only=True)
class CallJobOptions:
    """A job whose items are calls of `call`: each input line, one JSON object, is its input.

    `unpack=True` passes the object as keyword arguments (an SDK's `create(**line)`), less its
    `id`, which names the item; otherwise the object is the one argument, whole (a LangChain
    runnable's `ainvoke` takes its input dict so). `cost(object)` is each call's estimate
    (default: one request and the tokens of the object's text). Of `input`, the path,
    `max_line_bytes` and `strict` apply (lines are always JSON objects); it has no send
    options: its sender (`CallSender`) is handed to the job.
    """

    input: InputOptions
    output_path: str
    flags: JobFlags = field(default_factory=JobFlags)
    call: AsyncCallable
    cost: CostOf | None = None
    unpack: bool = False
    name: str | None = None  # what the job calls the callable; its qualified name by default

    def params(self, target: Target) -> dict[str, Any]:
        """The callable by `name`, or its qualified name: a rerun with another is another job.

        Its body is not known: a changed prompt inside the same function resumes the job
        (pass `restart=True` to start over, or another `name`).
        """
        return {"call": self.name or callable_name(self.call), "unpack": self.unpack}

    def route(self, target: Target) -> dict[str, Any]:
        """How the input is read: each object is known by its id and its line's bytes."""
        return {"format": "jsonl objects", "max_line_bytes": self.input.max_line_bytes}

    def read(
        self, path: str, warn: Callable[[str], None] | None = None
    ) -> Generator[InputItem, None, None]:
        return read_objects(
            path,
            self._request,
            max_line_bytes=self.input.max_line_bytes,
            display_name=self.input.path,
        )

    def _request(self, id: str, obj: dict[str, Any]) -> Request:
        args: tuple[Any, ...]
        if self.unpack:
            args, kwargs = (), {k: v for k, v in obj.items() if k != "id"}
        else:
            args, kwargs = (obj,), {}
        cost = self.cost(obj) if self.cost is not None else default_cost(args, kwargs)
        # The object's `metadata` goes to its output line, as a prompt line's does in `run`.
        metadata = obj.get("metadata")
        return CallRequest(
            messages=(), id=id, fn=self.call, args=args, kwargs=kwargs, cost=cost,
            metadata=metadata,
        )  # fmt: skip


class CallSender:
    """Runs a job's calls from this process, through an engine of its own over `limiter`.

    The calls decide where they go, so there is no provider: `target` only names the callable.
    Each ok result's return value is made JSON here, once, for its output line and the store,
    without the secrets the process knows (a server may quote the key an SDK sent it).
    """

    simulated = False
    batch_body_fields = False

    def __init__(
        self,
        name: str,
        *,
        limiter: Limiter,
        concurrency: int,
        retry: RetryPolicy,
        redactor: Redactor | None = None,
        prices: Prices | None = None,
    ) -> None:
        self.target = Target(provider="call", model=name)
        self._redactor = redactor or Redactor()
        self._prices = prices or chain(None)
        self._pricers: dict[str, Pricer] = {}  # by provider, made once one answers
        self._spent, self._priced = Decimal(0), 0
        self._engine = Engine(
            _no_prompts, limiter=limiter, workers=concurrency, retry=retry, redactor=redactor
        )

    def describe(self) -> str:
        return self.target.model

    async def prepared(self, identity: str, *, retry_failed: bool) -> None:
        pass

    def statistics(self) -> EngineStats:
        # The engine runs calls unpriced: their answers are priced here, as they come out.
        stats = self._engine.statistics()
        return dataclasses.replace(stats, cost_usd=self._spent, priced=self._priced)

    async def map(
        self, requests: AsyncIterable[Request], *, stop: asyncio.Event
    ) -> AsyncIterator[Result]:
        async for result in self._engine.map(requests, stop=stop):
            if result.ok:
                result.cost = self._cost(result)
                result.cost_basis = None if result.cost is None else STANDARD
                value = json_fragment(result.value, self._redactor.body)
                # `text` is the answer's, when the value has one (an SDK's response, a string);
                # a value without (a dict, a number) has none: null, not "".
                text: str | None = None
                if text_from_sdk(result.value) is not None:
                    text = self._redactor.known(result.text) if result.text else result.text
                result = dataclasses.replace(result, value=value, text=text)
            yield result

    def _cost(self, result: Result) -> Decimal | None:
        """What an answer cost, when it is an official SDK's answer whose usage was read: the
        calls go wherever they like, so the answer says which provider and model to price."""
        named = priced_as(result.value)
        if named is None or result.usage is None:
            return None
        provider, model = named
        pricer = self._pricers.get(provider)
        if pricer is None:
            pricer = self._pricers[provider] = Pricer(self._prices, provider, model)
        cost = pricer.cost(model, result.usage)
        if cost is not None:
            self._spent += cost
            self._priced += 1
        return cost

    async def __aenter__(self) -> CallSender:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        pass


def _no_prompts(request: Request) -> Awaitable[Outcome]:
    """The engine's `send` for prompts: a call job's reader makes only calls, which run
    themselves (`CallRequest.sent_by`)."""
    raise TypeError(f"a call job sends only calls, not {request!r}")


async def run_job(
    fn: AsyncCallable,
    input_path: str,
    output_path: str,
    *,
    limits: Limits | None = None,
    concurrency: int | None = None,
    rpm: float | None = None,
    rpd: float | None = None,
    tpm: float | None = None,
    itpm: float | None = None,
    otpm: float | None = None,
    max_cost: float | None = None,
    limiter: Limiter | None = None,
    retry: RetryPolicy | None = None,
    cost: CostOf | None = None,
    unpack: bool = False,
    restart: bool = False,
    retry_failed: bool = False,
    resend_changed: bool = False,
    stop: asyncio.Event | None = None,
    name: str | None = None,
    env: Mapping[str, str] | None = None,
    prices: Prices | str | os.PathLike[str] | Mapping[str, Any] | None = None,
) -> JobSummary:
    """`await fn(line)` for every JSON object line of `input_path`, durably, under the limits.

        chain = prompt | ChatLLMGather(model="gpt-4o-mini") | StrOutputParser()
        summary = await llmgather.run_job(
            chain.ainvoke, "docs.jsonl", "out.jsonl", rpm=500, name="summaries-v1"
        )

    Each result is committed as it arrives to a job store beside `output_path`; `output_path`
    gets one line per input, `llmgather run`'s (`id`, `status`, `attempts`, `latency_ms`,
    `error`…) with the call's return value as `value`, its answer's text as `text` (null for
    a value that has none) and the input object's `metadata` as it was. Run it again after any
    stop, even a kill, and it resumes: finished items are not called again. A rerun with
    another callable (by qualified name) is refused (JobMismatchError) unless `restart`; a
    rerun on an edited input calls what is new, fixed or still pending and nothing else, and
    an object with a result that changed only with `resend_changed` (ChangedItemsError,
    nothing called, otherwise); `retry_failed` calls the failed items again. Setting `stop`
    ends the job gracefully.

    Limits are `limits=Limits(...)`, or `concurrency`, `rpm`… as for `Client` (not both), or a
    `limiter=` shared with other clients of this event loop (or a `RedisLimiter`). An SDK's
    errors are mapped (a 429 pauses the limiter, a 401 is not retried); any other exception
    fails its item, not retried. `max_cost` is a hard budget in USD (`Limits.max_cost`): with
    it, `cost` must give each call's worst case (`Cost(nano_usd=..., priced=...)`). `unpack`, `cost`: see `CallJobOptions`. `env` (default
    `os.environ`) holds the provider keys the calls' SDKs may read: none of them is shown in
    a result. Returns the job's summary (counts, not values).

    A line's `cost` is priced when the call returns an official SDK's answer (openai,
    anthropic, google-genai) with its usage: at the provider and model that answer names, on
    genai-prices' table or `prices` over it (as `Client(prices=...)`). Any other value (a
    string, a dict, a LangChain message) has a null cost: it cannot say who answered.

    `name` is the callable's name in the job's identity. It is required where the qualified
    name says nothing of what the callable does: every LangChain chain's `ainvoke` is
    `RunnableSequence.ainvoke`, every lambda `<lambda>`, and two different chains run on the
    same files must not resume each other's job.
    """
    if name is None and _says_nothing(callable_name(fn)):
        raise ConfigurationError(
            f"{callable_name(fn)} names every callable of its kind: give the job a name= "
            'that says what it computes (run_job(chain.ainvoke, ..., name="summaries-v1")), '
            "so that another chain on the same files is another job"
        )
    limits = limits_given(
        limits, concurrency=concurrency, rpm=rpm, rpd=rpd, tpm=tpm, itpm=itpm, otpm=otpm,
        max_cost=max_cost,
    )  # fmt: skip
    if limits.max_cost is not None and cost is None:
        # A callable's price is not known here: its worst case must come from the caller.
        raise ConfigurationError(
            "run_job(max_cost=...) needs cost= to give each call's worst case in nano-dollars "
            "(a Cost with nano_usd, and priced to settle it with the real usage)"
        )
    options = CallJobOptions(
        input=InputOptions(path=input_path),
        output_path=output_path,
        flags=JobFlags(
            restart=restart, retry_failed=retry_failed, resend_changed=resend_changed
        ),
        call=fn, cost=cost, unpack=unpack, name=name,
    )  # fmt: skip
    sender = CallSender(
        name or callable_name(fn),
        limiter=own_or_shared(limits, limiter, owner="run_job"),
        concurrency=limits.concurrency,
        retry=retry or RetryPolicy(),
        # The calls' SDKs may read the provider keys from the environment: none is shown.
        redactor=secrets_redactor(os.environ if env is None else env),
        prices=chain(prices),
    )
    job = Job(options, sender=sender)
    if stop is not None:
        job.stop = stop
    return await job.run()


def callable_name(fn: Any) -> str:
    """`module.qualname` of a function, a bound method (`RunnableSequence.ainvoke`), a
    `functools.partial`'s function or a callable object's class: stable from run to run."""
    if isinstance(fn, functools.partial):
        return f"partial({callable_name(fn.func)})"
    target = getattr(fn, "__func__", fn)  # a bound method's function knows its module
    qualname = getattr(target, "__qualname__", None)
    if not isinstance(qualname, str):
        target = type(fn)  # a callable object: its class
        qualname = target.__qualname__
    module = getattr(target, "__module__", None)
    return f"{module}.{qualname}" if module else qualname


def _says_nothing(qualified: str) -> bool:
    """A qualified name shared by callables that compute different things."""
    return "<lambda>" in qualified or qualified.startswith("langchain_core.runnables.")
