"""A link to one provider: a resolved target, its adapter, a transport and an engine, entered
with `async with` by whoever sends (the `Client`, the service's upstream, `ChatLLMGather`, a
job's sender, a queue worker).

    target ─▶ Link(target, limiter, LinkOptions(...)) ─▶ async with: simulator? adapter,
              transport, engine ─▶ send(request) / open_stream(request) / engine.map(...)

The target comes resolved (once, at the edge that read the model string and the environment);
the limiter comes open (`open_link` opens one from `Limits`, locally or through Redis).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmgather import _exchange
from llmgather._config import DEFAULT_CONCURRENCY, Limits, Timeouts
from llmgather._engine import Engine
from llmgather._errors import ConfigurationError
from llmgather._redact import Redactor
from llmgather._retry import RetryPolicy
from llmgather._types import Outcome, Request, Usage
from llmgather.cache import BoundCache, ResponseCache, endpoint_of, request_key
from llmgather.limits import Limiter
from llmgather.limits.open import open_limiter
from llmgather.pricing import STANDARD, Pricer, Prices, chain
from llmgather.pricing.reserve import SpendLedger
from llmgather.providers.base import Provider
from llmgather.providers.registry import Target, secrets_redactor
from llmgather.transport import Http11Transport, HttpRequest, MockTransport, Proxies, Transport

if TYPE_CHECKING:
    from llmgather.sim.config import SimConfig

logger = logging.getLogger("llmgather")

_MAX_SHAPES = 64
_OUTSIDE = "use the client inside `async with llmgather.Client(...)`"


@dataclass(frozen=True, kw_only=True, slots=True)
class LinkOptions:
    """How a link sends. `workers`: requests sent at once (also the transport's connections);
    `stream`: read every answer as a stream (time to first token); `transport`: one of the
    caller's, never closed here (else a pooled HTTP/1.1 transport through `proxies`);
    `redactor`: the secrets hidden from every failure; `simulator`: the `SimConfig` of the
    embedded simulator a simulated target starts; `seed`: the retry jitter's; `prices`: what
    prices each answer (`pricing.chain`: the user's over genai-prices' table); `warn`: hears
    what the user should know (a model with no price), the library's log when unset; `cache`:
    answers requests seen before, before the limiter (the caller's: closed by them)."""

    workers: int = DEFAULT_CONCURRENCY
    retry: RetryPolicy | None = None
    timeouts: Timeouts | None = None
    stream: bool = False
    transport: Transport | None = None
    proxies: Proxies | None = None
    redactor: Redactor | None = None
    simulator: SimConfig | None = None
    seed: int | None = None
    prices: Prices | None = None
    warn: Callable[[str], None] | None = None
    cache: ResponseCache | None = None


def link_options(
    target: Target,
    env: Mapping[str, str],
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    trust_env: bool = True,
    transport: Transport | None = None,
    **options: Any,
) -> LinkOptions:
    """LinkOptions read at the edge from `env`: every secret known there hidden (the key
    `api_key` given, the target's, the URLs' credentials), and the proxy variables (unless
    `trust_env` is False), so a proxy URL that cannot work fails before anything is sent. The
    built-in simulator, on this machine's loopback, is always reached directly, and a
    `transport` handed in has the proxies its owner gave it."""
    redactor = secrets_redactor(env, api_key, target.api_key, urls=(base_url,))
    direct = target.simulated or transport is not None
    proxies = None if direct else Proxies.from_env(env, trust_env=trust_env)
    return LinkOptions(redactor=redactor, proxies=proxies, transport=transport, **options)


class Link:
    """One provider, reached: built from a resolved `target` and an open `limiter`; inside
    `async with` it has its adapter, its transport and its engine (a simulated target's
    embedded simulator started first, off the loop)."""

    def __init__(
        self, target: Target, limiter: Limiter, options: LinkOptions | None = None
    ) -> None:
        self.target = target
        self.limiter = limiter
        self.options = options = options or LinkOptions()
        self.redactor = options.redactor or Redactor()
        # Every link prices its answers: genai-prices' table unless told otherwise.
        prices = options.prices or chain(None)
        self.pricer = Pricer(prices, target.provider, target.model, options.warn)
        limits = getattr(limiter, "limits", None)
        self.capped = isinstance(limits, Limits) and limits.max_cost is not None
        if self.capped:
            refuse_unpriced(self.pricer)
        # Where a capped job's store records each send's reservation (set before entering).
        self.ledger: SpendLedger | None = None
        self._stream = options.stream
        self.base_url: str | None = None  # where requests go, once entered
        self._provider: Provider | None = None
        self._transport: Transport | None = None
        self._engine: Engine | None = None
        self._stack: AsyncExitStack | None = None
        self._shapes: dict[tuple[str, bool], HttpRequest] = {}

    @property
    def simulated(self) -> bool:
        return self.target.simulated

    async def __aenter__(self) -> Link:
        options = self.options
        async with AsyncExitStack() as stack:
            base_url = self.target.base_url
            # A MockTransport answers without a server; any other transport, handed in or
            # not, needs the simulator to be there.
            if self.target.simulated and not isinstance(options.transport, MockTransport):
                base_url = await self._start_simulator(stack)
                logger.warning(
                    "llmgather: no API key given, so requests go to the built-in simulator at %s",
                    base_url,
                )
            transport = options.transport
            if transport is None:  # a transport handed in belongs to its owner
                transport = Http11Transport(
                    max_connections=options.workers,
                    timeouts=options.timeouts or Timeouts(),
                    proxies=options.proxies,
                )
                stack.push_async_callback(transport.aclose)
            self.base_url = base_url
            self._provider = self.target.build(base_url)
            self._transport = transport
            self._shapes.clear()
            self._engine = Engine(
                self.send,
                limiter=self.limiter,
                workers=options.workers,
                retry=options.retry,
                rng=random.Random(options.seed),
                redactor=self.redactor,
                # Both transports count their resends; a transport of the user's may not.
                resent=lambda: getattr(transport, "stale_retries", 0),
                pricer=self.pricer,
                capped=self.capped,
                cache=None if options.cache is None else BoundCache(options.cache, self.cache_key),
                default_max_tokens=self.target.spec.default_max_tokens,
            )
            self._engine.ledger = self.ledger
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._engine = None  # a later call says it is outside `async with`
        self._transport = None  # the adapter stays: it sends nothing
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()

    @property
    def provider(self) -> Provider:
        """The adapter of the provider (holds the key; never printed)."""
        if self._provider is None:
            raise RuntimeError(_OUTSIDE)
        return self._provider

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            raise RuntimeError(_OUTSIDE)
        return self._transport

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError(_OUTSIDE)
        return self._engine

    # -- requests -----------------------------------------------------------------------------

    def max_tokens(self, given: int | None) -> int | None:
        """The max tokens a request sends: its own, else the provider's default (an API that
        requires one gets it, and the limiter reserves it)."""
        return self.target.spec.default_max_tokens if given is None else given

    def filled(self, request: Request) -> Request:
        """`request` with the provider's default max tokens if it sets none."""
        max_tokens = self.max_tokens(request.max_tokens)
        return (
            request if max_tokens == request.max_tokens else request.replace(max_tokens=max_tokens)
        )

    def translated(
        self, request: Request, *, stream: bool, model: str | None = None
    ) -> HttpRequest:
        """`request` in the provider's dialect, for `model` (else its own, else the target's)."""
        model = model or request.model or self.target.model
        return self.provider.build_request(request, model=model, stream=stream)

    def relayed(self, body: bytes, *, model: str, stream: bool) -> HttpRequest:
        """A body already in the provider's dialect, unchanged, to its URL for `model`, with
        the key."""
        shape = self._shapes.get((model, stream))
        if shape is None:  # built by the adapter once per model and mode, not per request
            if len(self._shapes) >= _MAX_SHAPES:
                self._shapes.clear()  # models are the clients' to name: keep the cache bounded
            shape = self.provider.build_request(Request(messages=()), model=model, stream=stream)
            self._shapes[(model, stream)] = shape
        return HttpRequest(shape.method, shape.url, shape.headers, body)

    def cache_key(self, request: Request) -> str:
        """The response cache's key of `request`: the body this link's adapter builds for it,
        as a plain request (a streamed one and a plain one share their answer)."""
        provider = self.provider
        http = provider.build_request(
            request, model=request.model or self.target.model, stream=False
        )
        endpoint = endpoint_of(http.url, simulated=self.target.simulated)
        return request_key(provider.name, endpoint, http.body)

    # -- sending (what the engine calls) ---------------------------------------------------------

    def send(self, request: Request) -> Awaitable[Outcome]:
        """The engine's send for prompts (a user's callable runs itself: `CallRequest.sent_by`)."""
        # A plain function returning the exchange's coroutine: one coroutine frame fewer to
        # resume at every I/O step of every request.
        provider, transport = self._provider, self._transport
        assert provider is not None and transport is not None
        stream = self._stream
        http = provider.build_request(
            request, model=request.model or self.target.model, stream=stream
        )
        if stream:
            return _exchange.stream_to_end(transport, provider, http)
        return _exchange.complete(transport, provider, http)

    def send_http(self, http: HttpRequest, relay: bool = False) -> Awaitable[Outcome]:
        """A built request sent as it is; the Outcome's `value` is the provider's answer
        when `relay`."""
        send = _exchange.relay if relay else _exchange.complete
        return send(self.transport, self.provider, http)

    def open_stream(self, request: Request) -> AbstractAsyncContextManager[_exchange.LiveStream]:
        return self.open_http_stream(self.translated(request, stream=True))

    def open_http_stream(
        self, http: HttpRequest, *, relay: _exchange.StreamEdges | None = None
    ) -> AbstractAsyncContextManager[_exchange.LiveStream]:
        """A built streaming request's live stream: raw chunks when `relay` says where the
        answer starts and ends, else text pieces."""
        return _exchange.open_stream(self.transport, self.provider, http, relay=relay)

    async def _start_simulator(self, stack: AsyncExitStack) -> str:
        from llmgather.sim import EmbeddedSimulator, SimConfig

        simulator = EmbeddedSimulator(self.options.simulator or SimConfig(latency_ms=200))
        # Starting waits for the simulator's thread to listen: never on the event loop.
        await asyncio.to_thread(simulator.start)
        stack.push_async_callback(asyncio.to_thread, simulator.stop)
        return simulator.base_url + self.target.spec.base_url_suffix


async def open_link(
    stack: AsyncExitStack,
    target: Target,
    limits: Limits | Limiter,
    options: LinkOptions | None = None,
    *,
    limiter_url: str | None = None,
    limiter_key: str | None = None,
    job_cap: bool = False,
) -> Link:
    """A link to the resolved `target` under `limits`: a limiter of this process, or, given
    `limiter_url`, one shared through Redis (checked now, so a Redis that does not answer fails
    before anything is sent, and closed with `stack`; `job_cap`: its cost cap kept here, a
    job's, see `open_limiter`); or under the open limiter given. The link is entered by its
    owner, when it starts sending."""
    if isinstance(limits, Limits):
        limiter = await open_limiter(
            stack, limits, target, url=limiter_url, key=limiter_key, job_cap=job_cap
        )
    else:
        limiter = limits
    return Link(target, limiter, options)


def refuse_unpriced(pricer: Pricer) -> None:
    """Under a cost cap, a model with no price is refused before anything is sent: the cap
    could not count what it spends (fail closed)."""
    model = f"{pricer.provider}:{pricer.model}"
    if pricer.prices.price(pricer.provider, pricer.model, Usage(1, 1), STANDARD) is None:
        raise ConfigurationError(
            f"--max-cost: no price is known for {model}, so a cap could not count what it "
            "spends; HINT: give its prices in USD per million tokens with --prices FILE"
            f' (JSON: {{"{pricer.model}": {{"input": 0.15, "output": 0.6}}}})'
        )
