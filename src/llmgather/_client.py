"""The library's front door: `Client` wires a provider, the pooled transport, the limiter and
the engine together behind `complete`, `stream`, `gather` and `map`."""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from llmgather._config import DEFAULT_CONCURRENCY, Limits, Timeouts
from llmgather._engine import Engine, EngineStats
from llmgather._errors import ConfigurationError, InvalidInputError
from llmgather._retry import RetryPolicy
from llmgather._types import Request, Result
from llmgather.limits.local import Limiter
from llmgather.providers.base import Headers, Provider
from llmgather.providers.registry import Target, resolve_target
from llmgather.transport.aiohttp import LiveStream, Outcome, Transport

logger = logging.getLogger("llmgather")

Prompt = str | Request | list[dict[str, Any]] | dict[str, Any]


class Client:
    """Concurrent, rate-limited, retried LLM calls.

        async with llmgather.Client("openai:gpt-4o-mini", rpm=500, tpm=200_000) as client:
            text = await client.complete("Why do some birds migrate?")
            results = await client.gather(prompts)        # input order, errors as values
            async for result in client.map(many_prompts):  # completion order, bounded memory
                ...

    With no model string and no API key in the environment, requests go to the built-in
    simulator (started on a free 127.0.0.1 port) and a warning says so.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        rpm: float | None = None,
        tpm: float | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        defaults: Mapping[str, Any] | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        stream: bool = False,
        simulator: Any = None,
        env: Mapping[str, str] | None = None,
        seed: int | None = None,
    ) -> None:
        """`defaults` fill what a request leaves unset: `system`, `max_tokens`, `temperature`.

        `stream=True` makes `gather`/`map` read every answer as a stream (recording time to
        first token); `simulator` is a `SimConfig` for the embedded simulator, if one starts.
        """
        self.target: Target = resolve_target(
            model, base_url=base_url, api_key=api_key, env=os.environ if env is None else env
        )
        self._limits = Limits(concurrency=concurrency, rpm=rpm, tpm=tpm)
        self._retry = retry or RetryPolicy()
        self._timeouts = timeouts or Timeouts()
        self._defaults = dict(defaults or {})
        unknown = set(self._defaults) - {"system", "max_tokens", "temperature"}
        if unknown:
            raise ConfigurationError(f"unknown defaults {sorted(unknown)}")
        self._stream = stream
        self._sim_config = simulator
        self._seed = seed
        self._simulator: Any = None
        self._transport: Transport | None = None
        self._provider: Provider | None = None
        self._engine: Engine | None = None
        self.base_url: str | None = None

    @property
    def simulated(self) -> bool:
        return self.target.simulated

    async def __aenter__(self) -> Client:
        base_url = self.target.base_url
        if self.target.simulated:
            base_url = self._start_simulator()
            logger.warning(
                "llmgather: no API key given, so requests go to the built-in simulator at %s",
                base_url,
            )
        self.base_url = base_url
        provider = self._provider = self.target.build(base_url)
        limiter = Limiter(self._limits)

        def learn_limits(headers: Headers) -> None:
            rpm, tpm = provider.announced_limits(headers)
            if rpm or tpm:
                limiter.adopt(rpm=rpm, tpm=tpm)

        self._transport = await Transport(
            max_connections=self._limits.concurrency,
            timeouts=self._timeouts,
            on_headers=learn_limits,
        ).__aenter__()
        self._engine = Engine(
            self._send, limiter=limiter, retry=self._retry, rng=random.Random(self._seed)
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._engine = None  # a later call says "use the client inside `async with`"
        if self._transport is not None:
            await self._transport.__aexit__(*exc_info)
            self._transport = None
        if self._simulator is not None:
            self._simulator.stop()
            self._simulator = None

    # -- the API ---------------------------------------------------------------------------

    async def complete(self, prompt: Prompt, **overrides: Any) -> str:
        """The answer's text; raises the APIError that ended the last attempt."""
        result = await self.engine.run_one(self.request(prompt, **overrides))
        if result.exception is not None:
            raise result.exception
        return result.text or ""

    def stream(self, prompt: Prompt, **overrides: Any) -> AsyncIterator[str]:
        """Text pieces as they arrive. Retried until the first piece; after it, errors raise."""
        return self.engine.stream(self.request(prompt, **overrides), self._open_stream)

    async def gather(self, prompts: Iterable[Prompt] | AsyncIterable[Prompt]) -> list[Result]:
        """One Result per prompt, in input order; failures are values, never raised.

        A prompt that is not one (a number, a dict without "prompt" or "messages") raises
        before anything is sent, when `prompts` is a plain iterable.
        """
        if not isinstance(prompts, AsyncIterable):
            # Every Result is kept anyway, so converting first costs no memory that matters.
            prompts = [self.request(prompt) for prompt in prompts]
        results: list[Result] = []
        async for result in self.map(prompts):
            results.append(result)
        results.sort(key=lambda r: r.index)
        return results

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
            requests = (self.request(prompt) for prompt in prompts)
        return self.engine.map(requests, window=window, stop=stop)

    def statistics(self) -> EngineStats:
        return self.engine.statistics()

    def request(self, prompt: Prompt, **overrides: Any) -> Request:
        """A Request from a prompt string, a message list, a dict or a Request, with defaults."""
        options = {**self._defaults, **overrides}
        system = options.pop("system", None)
        if isinstance(prompt, Request):
            request = prompt
        elif isinstance(prompt, str):
            request = Request.from_prompt(prompt, system=system)
        elif isinstance(prompt, list):
            request = Request(messages=tuple(prompt))
        elif isinstance(prompt, dict):
            request = _from_dict(prompt, system)
        else:
            raise TypeError(
                f"a prompt must be a str, a message list, a dict or a Request, not {type(prompt).__name__}"
            )
        options.setdefault("max_tokens", None)
        if options["max_tokens"] is None:
            options["max_tokens"] = self.target.spec.default_max_tokens
        fills = {k: v for k, v in options.items() if v is not None and getattr(request, k) is None}
        return request.replace(**fills) if fills else request

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("use the client inside `async with llmgather.Client(...)`")
        return self._engine

    # -- plumbing ----------------------------------------------------------------------------

    async def _async_requests(self, prompts: AsyncIterable[Prompt]) -> AsyncIterator[Request]:
        async for prompt in prompts:
            yield self.request(prompt)

    def _send(self, request: Request) -> Awaitable[Outcome]:
        # A plain function returning the transport's coroutine: one coroutine frame fewer to
        # resume at every I/O step of every request.
        assert self._provider is not None and self._transport is not None
        http = self._provider.build_request(
            request, model=request.model or self.target.model, stream=self._stream
        )
        if self._stream:
            return self._transport.stream(self._provider, http)
        return self._transport.complete(self._provider, http)

    def _open_stream(self, request: Request) -> AbstractAsyncContextManager[LiveStream]:
        assert self._provider is not None and self._transport is not None
        http = self._provider.build_request(
            request, model=request.model or self.target.model, stream=True
        )
        return self._transport.open_stream(self._provider, http)

    def _start_simulator(self) -> str:
        from llmgather.sim import EmbeddedSimulator, SimConfig

        self._simulator = EmbeddedSimulator(self._sim_config or SimConfig(latency_ms=200))
        self._simulator.start()
        return self._simulator.base_url + self.target.spec.base_url_suffix


def _from_dict(data: dict[str, Any], system: str | None) -> Request:
    fields: dict[str, Any] = {
        k: data.get(k) for k in ("model", "max_tokens", "temperature", "metadata", "extra")
    }
    fields["id"] = "" if data.get("id") is None else str(data["id"])
    if "messages" not in data and "prompt" not in data:
        raise InvalidInputError(
            f'a prompt dict needs a "prompt" or a "messages" key; got keys {sorted(data)}'
        )
    if "messages" in data:
        return Request(messages=tuple(data["messages"]), **fields)
    return Request.from_prompt(str(data["prompt"]), system=data.get("system", system), **fields)
