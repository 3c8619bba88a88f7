"""The library's front door: `Client` reads the model string and the environment, and sends
through a link to the provider (its adapter, transport and engine) behind `complete`,
`stream`, `gather`, `map`, `call` and `map_calls`."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from llmgather import _callables
from llmgather._config import Limits, Timeouts, limits_given
from llmgather._engine import Engine, EngineStats
from llmgather._errors import ConfigurationError
from llmgather._link import Link, link_options
from llmgather._prompt import TOOL_FIELDS, TOOL_INPUT_FIELDS, request_from_dict, tool_options
from llmgather._retry import RetryPolicy
from llmgather._types import Request, Result
from llmgather.cache import CacheSetting, ResponseCache, cache_setting, open_cache
from llmgather.limits import Cost, Limiter
from llmgather.limits.local import own_or_shared
from llmgather.pricing import Prices, chain
from llmgather.providers.base import Provider
from llmgather.providers.registry import Target, resolve_target
from llmgather.transport import Transport

if TYPE_CHECKING:
    from llmgather.sim.config import SimConfig


class Client:
    """Concurrent, rate-limited, retried LLM calls.

        async with llmgather.Client("gpt-4o-mini", rpm=500, tpm=200_000) as client:
            text = await client.complete("Why do some birds migrate?")
            results = await client.gather(prompts)        # input order, errors as values
            async for result in client.map(many_prompts):  # completion order, bounded memory
                ...
            result = await client.complete_result(prompt, tools=[tool])  # result.tool_calls

    Limits: `limits=Limits(...)`, or `concurrency`, `rpm`, `rpd`, `tpm`, `itpm`, `otpm`, build
    this client's own limiter; or pass `limiter=` to share one limiter (one budget) between
    several clients.
    `transport=` replaces the pooled HTTP/1.1 transport (`AiohttpTransport` uses aiohttp's
    client; `MockTransport` answers with a function). A transport handed in is the caller's:
    the client never closes it (it may serve several clients), so `await transport.aclose()`
    once done with it.

    Requests go through the proxy that `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` name, except
    to the hosts in `NO_PROXY`, as with the official SDKs; `trust_env=False` ignores them. A
    `transport=` of your own takes its own `proxies=`.

    With no API key in the environment, a bare model name (or none) goes to the built-in
    simulator (started on a free 127.0.0.1 port) and a warning says so.
    """

    def __init__(
        self,
        model: str | None = None,
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
        transport: Transport | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        defaults: Mapping[str, Any] | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        stream: bool = False,
        simulator: SimConfig | None = None,
        env: Mapping[str, str] | None = None,
        seed: int | None = None,
        trust_env: bool = True,
        prices: Prices | str | os.PathLike[str] | Mapping[str, Any] | None = None,
        cache: bool | str | os.PathLike[str] | CacheSetting | ResponseCache | None = None,
    ) -> None:
        """`defaults` fill what a request leaves unset: `system`, `max_tokens`, `temperature`.

        `limits=Limits(...)` or the flat keywords `concurrency` (default 64), `rpm`, `rpd`,
        `tpm`, `itpm`, `otpm`, not both (a newer kind of budget is given in `Limits` only).
        `concurrency` is also the number of workers sending (with a shared `limiter`, each
        client's own pool; the limiter's cap is what binds). `stream=True` makes `gather`/`map`
        read every answer as a stream (recording time to first token); `simulator` is a
        `SimConfig` for the embedded simulator, if one starts. `prices` are the user's own,
        over genai-prices' table: a JSON file's path, a mapping of the same shape
        (`{"my-model": {"input": 0.15, "output": 0.6}}`, USD per million tokens) or a `Prices`.

        `max_cost` is a hard budget in USD for everything the client sends (`Limits.max_cost`):
        each request reserves its worst case, and once nothing more fits the rest fail unsent
        with `BudgetExhaustedError`. A model with no price is refused here (fail closed).

        `cache` answers requests seen before from a response cache, before the limiter: True
        (a file in the current folder), a file's path or a `redis://` URL, "always" (also
        requests with a temperature above 0, or none), a `CacheSetting(where, always=...)`,
        or an open `ResponseCache` to share (its owner closes it). A hit's Result has
        `cached=True`, cost 0 and the original usage.
        """
        limits = limits_given(
            limits, concurrency=concurrency, rpm=rpm, rpd=rpd, tpm=tpm, itpm=itpm, otpm=otpm,
            max_cost=max_cost,
        )  # fmt: skip
        env = os.environ if env is None else env
        self.target: Target = resolve_target(model, base_url=base_url, api_key=api_key, env=env)
        # Read here, at the edge: every secret this client knows, hidden from every failure it
        # reports; the proxies, so a proxy URL that cannot work fails before anything is sent.
        options = link_options(
            self.target,
            env,
            api_key=api_key,
            base_url=base_url,
            trust_env=trust_env,
            transport=transport,
            workers=limits.concurrency,
            retry=retry or RetryPolicy(),
            timeouts=timeouts or Timeouts(),
            stream=stream,
            simulator=simulator,
            seed=seed,
            prices=chain(prices),
        )
        self.limiter: Limiter = own_or_shared(limits, limiter, owner="the client")
        self._link = Link(self.target, self.limiter, options)
        self.redactor = self._link.redactor
        self._defaults = dict(defaults or {})
        unknown = set(self._defaults) - {"system", "max_tokens", "temperature"}
        if unknown:
            raise ConfigurationError(f"unknown defaults {sorted(unknown)}")
        self._cache = cache if isinstance(cache, ResponseCache) else client_cache_setting(cache)
        self._stack: AsyncExitStack | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def simulated(self) -> bool:
        return self.target.simulated

    @property
    def base_url(self) -> str | None:
        """Where requests go, once entered (the built-in simulator's URL, if it started)."""
        return self._link.base_url

    async def __aenter__(self) -> Client:
        stack = AsyncExitStack()
        if self._cache is not None:
            cache = self._cache
            if isinstance(cache, CacheSetting):  # opened here, closed with the client
                cache = await open_cache(cache)
                stack.push_async_callback(cache.aclose)
            self._link.options = dataclasses.replace(self._link.options, cache=cache)
        await stack.enter_async_context(self._link)
        self._stack = stack
        # Its connections and limiter belong to this loop: `engine` refuses to send from another.
        self._loop = asyncio.get_running_loop()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()

    # -- prompts ---------------------------------------------------------------------------

    async def complete(self, prompt: Prompt, **overrides: Any) -> str:
        """The answer's text; raises the APIError that ended the last attempt.

        For an answer that may be tool calls (`tools=[...]`), `complete_result` gives them.
        """
        return (await self.complete_result(prompt, **overrides)).text or ""

    async def complete_result(self, prompt: Prompt, **overrides: Any) -> Result:
        """The whole ok Result of one prompt: text, `tool_calls`, usage, finish_reason.

            result = await client.complete_result("Weather in Paris?", tools=[weather])
            for call in result.tool_calls:
                print(call.name, call.arguments)

        Raises the APIError that ended the last attempt, as `complete` does.
        """
        result = await self.engine.run_one(self.build_request(prompt, **overrides))
        if result.exception is not None:
            raise result.exception
        return result

    def stream(self, prompt: Prompt, **overrides: Any) -> AsyncIterator[str]:
        """Text pieces as they arrive. Retried until the first piece; after it, errors raise."""
        return self.engine.stream(self.build_request(prompt, **overrides), self._link.open_stream)

    async def gather(self, prompts: Iterable[Prompt] | AsyncIterable[Prompt]) -> list[Result]:
        """One Result per prompt, in input order; failures are values, never raised.

        A prompt that is not one (a number, a dict without "prompt" or "messages") raises
        before anything is sent, when `prompts` is a plain iterable.
        """
        if not isinstance(prompts, AsyncIterable):
            # Every Result is kept anyway, so converting first costs no memory that matters.
            defaults, link = self._defaults, self._link
            requests = [prompt_request(prompt, defaults, link) for prompt in prompts]
            return await in_input_order(self.engine.map(requests))  # built once, not again
        return await in_input_order(self.map(prompts))

    def map(
        self,
        prompts: Iterable[Prompt] | AsyncIterable[Prompt],
        *,
        window: int | None = None,
        stop: asyncio.Event | None = None,
    ) -> AsyncIterator[Result]:
        """Results in completion order over any (async) iterable, with bounded memory.

        Setting `stop` ends it gracefully: what is on the wire finishes, nothing more is sent.
        """
        requests: Iterable[Request] | AsyncIterable[Request]
        if isinstance(prompts, AsyncIterable):
            requests = self._async_requests(prompts)
        else:
            defaults, link = self._defaults, self._link
            requests = (prompt_request(prompt, defaults, link) for prompt in prompts)
        return self.engine.map(requests, window=window, stop=stop)

    # -- any async callable ----------------------------------------------------------------

    async def call(
        self,
        fn: Callable[..., Awaitable[Any]],
        /,
        *args: Any,
        cost: Cost | None = None,
        **kwargs: Any,
    ) -> Any:
        """`await fn(*args, **kwargs)` under this client's limits and retries; its return value.

        For an official SDK call (`AsyncOpenAI(max_retries=0).chat.completions.create`, …):
        its errors are mapped to llmgather's tree, so a 429 pauses the shared limiter and a
        401 is not retried; the usage in its answer settles the token estimate, and the limits
        its headers announce pace the limiter (an openai or anthropic method passed as itself
        is called in its `with_raw_response` form; a raw answer is returned parsed). A stream
        it returns holds its concurrency slot until read to its end, or closed. `cost` is the
        estimate to reserve (default: one request, and the tokens of `messages`/`contents`
        and `max_tokens` when the call passes them); under `max_cost` a Cost with the call's
        worst case in `nano_usd` is required, else ConfigurationError. Raises the error that ended the last try,
        or the callable's own exception as it raised it (never retried).
        """
        result = await self.engine.run_one(_callables.single_call(fn, args, kwargs, cost))
        if result.exception is not None:
            raise result.exception
        return result.value

    def map_calls(
        self,
        fn: Callable[..., Awaitable[Any]],
        items: Iterable[Any] | AsyncIterable[Any],
        *,
        cost: Callable[[Any], Cost] | None = None,
        unpack: bool = True,
        window: int | None = None,
        stop: asyncio.Event | None = None,
    ) -> AsyncIterator[Result]:
        """`fn(item)` for every item, through the engine: Results in completion order, each
        with the call's return value in `value`, bounded memory, errors as values.

        An item that is a dict is passed as keyword arguments (`fn(**item)`, as the SDKs take
        them), anything else as the one argument; `unpack=False` passes every item as the one
        argument (a LangChain runnable's `ainvoke` takes its input dict so). `cost(item)`
        gives each call's estimate, if the default won't do; under `max_cost` it is required,
        and each Cost must give the call's worst case (`nano_usd`, and `priced` to settle it).
        """
        if cost is None and self._link.capped:
            # A callable's price is not known here: its worst case must come from the caller.
            raise ConfigurationError(
                "map_calls under max_cost needs cost= to give each call's worst case in "
                "nano-dollars (a Cost with nano_usd, and priced to settle it with the real usage)"
            )
        requests: Iterable[Request] | AsyncIterable[Request]
        if isinstance(items, AsyncIterable):
            requests = _callables.async_call_requests(fn, items, cost, unpack)
        else:
            requests = (_callables.call_request(fn, item, cost, unpack) for item in items)
        return self.engine.map(requests, window=window, stop=stop)

    # -- the rest --------------------------------------------------------------------------

    def statistics(self) -> EngineStats:
        return self._link.engine.statistics()  # counters: readable from any thread or loop

    def build_request(self, prompt: Prompt, **overrides: Any) -> Request:
        """A Request from a prompt string, a message list, a dict or a Request, with defaults.

        `overrides` fill what the prompt leaves unset: `max_tokens`, `tools=[...]`,
        `json_schema={...}`… (the fields of a prompt dict, checked as a prompt dict's are).
        """
        return prompt_request(prompt, {**self._defaults, **overrides}, self._link)

    @property
    def provider(self) -> Provider:
        """The adapter of the provider in use (holds the key; never printed)."""
        return self._link.provider

    @property
    def transport(self) -> Transport:
        return self._link.transport

    @property
    def engine(self) -> Engine:
        engine = self._link.engine
        self._check_loop()
        return engine

    def _check_loop(self) -> None:
        """A RuntimeError that says so, rather than aiohttp's or asyncio's bare "Event loop is
        closed" from deep inside a send, when the client is used from an event loop other than
        the one it was entered on (a second `asyncio.run`, a notebook's cell run in another
        loop, a thread with a loop of its own)."""
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            return  # not sending yet: `map` builds its iterator before it is iterated
        if self._loop is not None and here is not self._loop:
            gone = "has since closed" if self._loop.is_closed() else "is another one"
            raise RuntimeError(
                "this Client was entered (`async with`) on another event loop, which "
                f"{gone}; its connections and limiter belong to that loop. Enter the Client "
                "inside the loop that uses it (`async with Client(...)` within the coroutine "
                "that asyncio.run runs), or make one Client per event loop (share a `limiter=` "
                "between them for one budget)"
            )

    # -- plumbing ----------------------------------------------------------------------------

    async def _async_requests(self, prompts: AsyncIterable[Prompt]) -> AsyncIterator[Request]:
        defaults, link = self._defaults, self._link
        async for prompt in prompts:
            yield prompt_request(prompt, defaults, link)


Prompt = str | Request | list[dict[str, Any]] | dict[str, Any]


def prompt_request(prompt: Prompt, options: Mapping[str, Any], link: Link) -> Request:
    """A Request from a prompt string, a message list, a dict or a Request; `options` fill
    what it leaves unset (`system`, `max_tokens`, `temperature`, the tool fields, checked
    together with the prompt's own), and `link` the max tokens of its provider's default."""
    options = dict(options)
    system = options.pop("system", None)
    tooling = {k: options.pop(k) for k in TOOL_INPUT_FIELDS if k in options}
    options["max_tokens"] = link.max_tokens(options.get("max_tokens"))
    fills = {k: v for k, v in options.items() if v is not None}
    if isinstance(prompt, str):
        request = Request.from_prompt(prompt, system=system, **fills)  # built once, not copied
        if not tooling:
            return request
    elif isinstance(prompt, Request):
        request = prompt
    elif isinstance(prompt, list):
        request = request_from_dict({"messages": prompt}, system=system)
    elif isinstance(prompt, dict):
        request = request_from_dict(prompt, system=system)
    else:
        raise TypeError(
            f"a prompt must be a str, a message list, a dict or a Request, not {type(prompt).__name__}"
        )
    fills = {k: v for k, v in fills.items() if getattr(request, k) is None}
    if any(v is not None for v in tooling.values()):
        # Checked together with what the prompt set: a tool_choice must name one of its tools.
        given = {k: getattr(request, k) for k in TOOL_FIELDS}
        given["tools"] = list(given["tools"] or ()) or None
        merged = {k: given[k] if given[k] is not None else tooling.get(k) for k in TOOL_FIELDS}
        if given["json_schema"] is None:  # OpenAI's spelling of json_schema, read by tool_options
            merged["response_format"] = tooling.get("response_format")
        fills |= {k: v for k, v in tool_options(merged).items() if given[k] is None}
    return request.replace(**fills) if fills else request


def client_cache_setting(
    cache: bool | str | os.PathLike[str] | CacheSetting | None,
) -> CacheSetting | None:
    """The cache `Client(cache=…)` names (see `Client`)."""
    if cache is None or cache is False:
        return None
    if cache is True:
        return CacheSetting()
    if isinstance(cache, CacheSetting):
        return cache
    if isinstance(cache, str | os.PathLike):
        return cache_setting([os.fspath(cache)], what="cache=")
    raise TypeError(
        "cache= takes True, a path, a redis:// URL, 'always', a CacheSetting or a "
        f"ResponseCache, not {type(cache).__name__}"
    )


async def in_input_order(results: AsyncIterator[Result]) -> list[Result]:
    collected = [result async for result in results]
    collected.sort(key=lambda r: r.index)
    return collected
