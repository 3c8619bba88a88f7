"""The one upstream every route sends through: the provider llmgather serves, its key, one
link to it (one pooled transport, one engine, so one retry layer) and one shared limiter for
the gateway, `/generate` and the jobs alike.

With no key set, the upstream is the embedded simulator, started once by the link and shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

from llmgather import _exchange
from llmgather._callables import CallRequest
from llmgather._config import Timeouts
from llmgather._engine import Engine
from llmgather._errors import InvalidInputError
from llmgather._link import Link, LinkOptions, open_link
from llmgather._types import Completion, Outcome, Request, Result
from llmgather.cache import open_cache
from llmgather.limits import Cost, LocalLimiter
from llmgather.limits.tokens import request_cost
from llmgather.pricing.reserve import capped_cost_bounded
from llmgather.providers.registry import Target, resolve_target, secrets_redactor
from llmgather.service.cached import ServiceCache
from llmgather.service.queueing import Departure
from llmgather.service.settings import ServiceSettings
from llmgather.transport import HttpRequest, Proxies

logger = logging.getLogger("llmgather.service")


class Upstream:
    def __init__(self, settings: ServiceSettings, env: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self._env = os.environ if env is None else env
        self.target: Target = resolve_target(
            settings.model, base_url=settings.base_url, api_key=settings.api_key, env=self._env
        )
        # Every secret the service knows, hidden from what it relays and answers.
        self.redactor = secrets_redactor(
            self._env, self.target.api_key, settings.token, urls=(settings.base_url,)
        )
        self.limiter = LocalLimiter(settings.limits)
        self._link: Link | None = None
        self._cache: ServiceCache | None = None
        self._stack = contextlib.AsyncExitStack()

    @property
    def simulated(self) -> bool:
        return self.target.simulated

    @property
    def model(self) -> str:
        return self.target.model

    @property
    def link(self) -> Link:
        if self._link is None:
            raise RuntimeError("the upstream has not started")
        return self._link

    @property
    def engine(self) -> Engine:
        return self.link.engine

    async def start(self) -> None:
        settings = self.settings
        # The proxy variables, read at the edge; the built-in simulator is reached directly.
        proxies = None if self.target.simulated else Proxies.from_env(self._env)
        cache = None
        if settings.cache is not None:
            # The default file lives with the service's jobs, as a job's beside its store.
            await asyncio.to_thread(settings.jobs_dir.mkdir, parents=True, exist_ok=True)
            cache = await open_cache(settings.cache, beside=str(settings.jobs_dir))
            self._stack.push_async_callback(cache.aclose)
            self._cache = ServiceCache(
                cache, provider=self.target.provider, simulated=self.target.simulated
            )
        options = LinkOptions(
            workers=settings.limits.concurrency,
            retry=settings.retry,
            timeouts=Timeouts(read=settings.timeout_s),
            proxies=proxies,
            redactor=self.redactor,
            simulator=settings.simulator,
            cache=cache,  # the jobs' prompts go through the link's own send
            prices=settings.prices,
        )
        link = await open_link(self._stack, self.target, self.limiter, options)
        self._link = await self._stack.enter_async_context(link)

    async def aclose(self) -> None:
        self._link = None
        await self._stack.aclose()

    # -- building what goes upstream -------------------------------------------------------

    def relayed(self, body: bytes, *, model: str, stream: bool) -> HttpRequest:
        """The client's own body, unchanged, to the upstream's URL for `model`, with the key."""
        return self.link.relayed(body, model=model, stream=stream)

    def prompted(self, prompt: str, *, system: str | None = None, **options: Any) -> Request:
        """A prompt (with its `options`: max_tokens, temperature… those not None) as the
        upstream takes it (see `prepared`)."""
        fills = {k: v for k, v in options.items() if v is not None}
        return self.prepared(Request.from_prompt(prompt, system=system, **fills))

    def prepared(self, request: Request) -> Request:
        """A request of another dialect as the upstream takes it: its default max tokens
        filled in (an API that requires one reserves it), its stop sequences (which the front
        dialects leave in `extra["stop"]`) where the upstream's API takes them."""
        request = self.link.filled(request)
        return _stop_moved(request, self.target.spec.stop_field)

    def translated(self, request: Request, *, stream: bool) -> HttpRequest:
        """A prepared request rebuilt in the upstream's dialect, for the served model."""
        return self.link.translated(request, model=self.model, stream=stream)

    # -- sending --------------------------------------------------------------------------

    async def complete(
        self,
        http: HttpRequest,
        cost: Cost,
        *,
        relay: bool,
        departure: Departure,
        model: str | None = None,
    ) -> Result:
        """The call through the engine (its limits, its retries); the Result's `value` is the
        upstream's answer when `relay`. Raises ClientGone if the client left before the
        send (nothing was sent, no budget spent). With a cache, an answer it holds comes back
        at once (`cached`), and a clean new one is kept. `cost` is `capped` already; `model`
        (the one relayed, else the served one) prices the answer."""
        cache = self._cache
        key = None if cache is None else cache.key(http)
        if key is not None:
            assert cache is not None
            if (hit := await cache.look_up(key, relay=relay)) is not None:
                return hit
        call = CallRequest(
            messages=(),
            fn=self.link.send_http,
            args=(http, relay),
            cost=cost,
            model=model,
            before_send=departure.leave,
        )
        result = await self.engine.run_one(call)
        if key is not None:
            assert cache is not None
            await cache.keep(key, result, relay=relay)
        return result

    async def recheck_key(self) -> bool:
        """After the upstream refused the key: whether it takes it now, asked with a request
        of one output token (sending resumes if it does)."""
        request = self.prompted("Say OK.", max_tokens=1)
        http = self.translated(request, stream=False)
        # Under a cap it reserves its worst case as any send does: its answer is billed too.
        cost = self.capped(request_cost(request.messages, request.max_tokens), http)
        call = CallRequest(
            messages=(), fn=self.link.send_http, args=(http, False), cost=cost, model=self.model
        )
        return await self.engine.recheck_key(call)

    def stream(
        self,
        http: HttpRequest,
        cost: Cost,
        *,
        relay: _exchange.StreamEdges | None,
        departure: Departure,
        model: str | None = None,
    ) -> StreamPump:
        """A streamed answer, retried until its first piece, read by a task of its own into a
        bounded buffer: raw chunks when `relay` (the client's dialect, which is the
        upstream's, saying where the answer starts and ends), else text pieces."""
        link = self.link
        pump = StreamPump()

        @contextlib.asynccontextmanager
        async def open_stream(_: Request) -> AsyncIterator[_exchange.LiveStream]:
            async with link.open_http_stream(http, relay=relay) as live:
                pump.live = live
                yield live

        call = CallRequest(
            messages=(), fn=_never, cost=cost, model=model, before_send=departure.leave
        )
        pump.start(link.engine.stream(call, open_stream))
        return pump

    def capped(
        self, cost: Cost, http: HttpRequest, *, model: str | None = None, choices: int = 1
    ) -> Cost:
        """Under `serve --max-cost`, `cost` with its worst case priced as `model` (the one
        relayed; None: the served one): the body's bytes bound its input's tokens (no tokenizer
        makes more tokens than bytes), its output times `choices` (the answers it asks for).
        Raises InvalidInputError for a model with no price (the gateway answers 400): a cap
        sends nothing it cannot price."""
        if not self.link.capped:
            return cost
        if choices > 1:
            cost = dataclasses.replace(cost, output_tokens=cost.output_tokens * choices)
        model = model or self.model
        found = capped_cost_bounded(cost, len(http.body), model, self.link.pricer)
        if found is None:
            raise InvalidInputError(
                f"not sent: no price is known for {model}, and this service's cost cap "
                "(--max-cost) sends nothing it cannot price; HINT: name a model it prices, or "
                "ask its operator to give the price with serve --prices FILE"
            )
        return found


class StreamPump:
    """Pieces of a stream moved by one task into a bounded queue, so the stream is read by a
    single task however the response is written, and stops when that task is cancelled."""

    _END = object()

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=64)
        self.task: asyncio.Task[None] | None = None
        self.live: _exchange.LiveStream | None = None

    def start(self, pieces: AsyncGenerator[Any, None]) -> None:
        self.task = asyncio.create_task(self._pump(pieces))

    async def _pump(self, pieces: AsyncGenerator[Any, None]) -> None:
        try:
            async for piece in pieces:
                await self._queue.put(piece)
        except Exception as exc:  # the stream's failure, handed to the reader
            await self._queue.put(exc)
            return
        finally:
            await pieces.aclose()
        await self._queue.put(self._END)

    async def next(self) -> Any:
        """The next piece, None at the end; raises the stream's error."""
        item = await self._queue.get()
        if item is self._END:
            return None
        if isinstance(item, Exception):
            raise item
        return item

    @property
    def completion(self) -> Completion:
        """The whole answer (its usage, its finish reason), once the stream has ended."""
        assert self.live is not None
        return self.live.outcome().completion

    async def aclose(self) -> None:
        """Stop reading: the upstream's stream is closed, the limiter released."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


def _stop_moved(request: Request, field: tuple[str, ...]) -> Request:
    """The request with `extra["stop"]` moved to `field` (a path of keys in the body)."""
    extra = dict(request.extra or {})
    stop = extra.pop("stop", None)
    if stop is None or field == ("stop",):
        return request
    *outer, last = field
    node = extra
    for key in outer:  # copied on the way down: the caller's dicts are not changed
        inner = node.get(key)
        node[key] = dict(inner) if isinstance(inner, dict) else {}
        node = node[key]
    node[last] = stop
    return request.replace(extra=extra)


async def _never() -> Outcome:
    raise AssertionError("a stream's call is opened by its open_stream, not run")
