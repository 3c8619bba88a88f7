"""`ChatLLMGather`: a LangChain chat model backed by a llmgather link: any provider llmgather
speaks, its shared token-aware limiter, its one retry layer, and its bounded pipeline for
`abatch`/`batch`."""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import get_config_list
from pydantic import ConfigDict, Field, PrivateAttr, SecretStr, model_validator

from llmgather._callables import PERMIT_HELD, call_request
from llmgather._client import in_input_order, prompt_request
from llmgather._config import DEFAULT_CONCURRENCY, Limits, Timeouts, limits_given
from llmgather._errors import ConfigurationError, InvalidInputError
from llmgather._link import Link, link_options
from llmgather._retry import RetryPolicy
from llmgather._types import Completion, Request, Result
from llmgather.langchain._messages import Answer, ai_message, last_chunk, piece_chunk, to_llmgather
from llmgather.langchain._session import Session, opener
from llmgather.langchain._structured import structured, tool_choice_value, tool_spec
from llmgather.limits import Cost
from llmgather.limits.local import own_or_shared
from llmgather.limits.tokens import request_cost
from llmgather.providers.registry import Target, resolve_target

_SESSION_LOCK = threading.Lock()  # two threads of a sync `batch` may both be first to call
# Per-call options a model takes (bound with `bind`, or passed to invoke); `stop` comes apart.
_CALL_OPTIONS = frozenset(
    {"model", "max_tokens", "temperature", "tools", "tool_choice", "json_schema"}
)


# The limits a model takes as fields of its own, beside `limits=Limits(...)`.
_FLAT_LIMITS = ("concurrency", "rpm", "rpd", "tpm", "itpm", "otpm")


class ChatLLMGather(BaseChatModel):
    """A LangChain chat model whose calls go through a llmgather client.

        chat = ChatLLMGather(model="gpt-4o-mini", rpm=500, tpm=200_000)
        chain = prompt | chat | StrOutputParser()
        summaries = await chain.abatch(texts)  # paced at the limits, no 429 reaches you

    `model` is a llmgather model string (`gpt-4o-mini`, `anthropic:claude-3-5-haiku-latest`,
    `gemini:gemini-2.0-flash`, `sim:anthropic`…); with no API key in the environment it goes
    to the built-in simulator. Limits are `limits=Limits(...)`, or (not both) `concurrency`,
    `rpm`, `rpd`, `tpm`, `itpm`, `otpm`, or a `limiter=` shared with other models and
    `LLMGatherRateLimiter`s (one budget).
    `max_retries` is llmgather's (the one retry layer); `timeout` is the read timeout.

    Every call runs on the limiter's own loop thread (see `_loop.py`), so `invoke` works in
    plain threads and `ainvoke` in any event loop. `close()` ends the client's connections.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True)

    model: str | None = Field(default=None, alias="model_name")
    temperature: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = Field(default=None, alias="stop_sequences")
    timeout: float | None = None
    max_retries: int | None = None
    api_key: SecretStr | None = None
    base_url: str | None = None
    streaming: bool = False
    concurrency: int = DEFAULT_CONCURRENCY
    rpm: float | None = None
    rpd: float | None = None
    tpm: float | None = None
    itpm: float | None = None
    otpm: float | None = None
    limits: Limits | None = Field(default=None, exclude=True)
    limiter: Any = Field(default=None, exclude=True)
    # A SimConfig, if the simulator starts (Any: pydantic would import the simulator to check it)
    simulator: Any = Field(default=None, exclude=True)

    _session: Session | None = PrivateAttr(default=None)
    _resolved: Target | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _check_settings(self) -> ChatLLMGather:
        # Resolved once, here: a model string, key or base URL that cannot work fails now.
        self._resolved = self._resolve()
        limits = self._limits()  # limits= beside the flat fields: refused
        if self.limiter is not None:  # limits given beside it: refused
            own_or_shared(limits, self.limiter, owner="the model")
        if self.max_retries is not None and self.max_retries < 0:
            raise ConfigurationError(f"max_retries must be 0 or more, got {self.max_retries}")
        return self

    # -- what LangChain asks of a chat model ------------------------------------------------

    @property
    def _llm_type(self) -> str:
        return "llmgather"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        target = self._target()
        return {"provider": target.provider, "model": target.model, "temperature": self.temperature}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        target = self._target()
        params = LangSmithParams(
            ls_provider=target.provider,
            ls_model_name=kwargs.get("model") or target.model,
            ls_model_type="chat",
        )
        temperature = kwargs.get("temperature", self.temperature)
        if temperature is not None:
            params["ls_temperature"] = temperature
        max_tokens = kwargs.get("max_tokens", self.max_tokens)
        if max_tokens is not None:
            params["ls_max_tokens"] = max_tokens
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        session = self._open()
        answer = session.home.run_sync(self._complete(session, self._call(messages, stop, kwargs)))
        return self._result(answer, session.target)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        session = self._open()
        answer = await session.home.run(self._complete(session, self._call(messages, stop, kwargs)))
        return self._result(answer, session.target)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        session = self._open()
        call = self._call(messages, stop, kwargs)
        for item in session.home.iterate(lambda: self._pieces(session, call)):
            chunk = self._chunk(item, session.target)
            if run_manager is not None and isinstance(item, str):
                run_manager.on_llm_new_token(item, chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        session = self._open()
        call = self._call(messages, stop, kwargs)
        async for item in session.home.aiterate(lambda: self._pieces(session, call)):
            chunk = self._chunk(item, session.target)
            if run_manager is not None and isinstance(item, str):
                await run_manager.on_llm_new_token(item, chunk=chunk)
            yield chunk

    # -- many inputs: llmgather's bounded pipeline ------------------------------------------

    async def abatch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage]:
        """One answer per input, in input order, through the engine's pipeline: at most
        `concurrency` calls in flight, paced by the limiter, each retried by llmgather.

        Each item still runs as `ainvoke` (callbacks, tracing and caching as usual); the
        engine holds its permit, so the call inside sends at once.
        """
        if not inputs:
            return []
        session = self._open()
        items = list(zip(inputs, get_config_list(config, len(inputs)), strict=True))
        results = await session.home.run(self._run_batch(session, items, kwargs))
        answers: list[Any] = []
        for result in results:
            if result.exception is not None and not return_exceptions:
                raise result.exception
            answers.append(result.value if result.exception is None else result.exception)
        return answers

    def batch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage]:
        """As `abatch`, from a thread with no running loop (it runs on the limiter's loop)."""
        if not inputs:
            return []
        session = self._open()
        batched = self.abatch(inputs, config, return_exceptions=return_exceptions, **kwargs)
        return session.home.run_sync(batched)

    async def _run_batch(
        self, session: Session, items: list[tuple[Any, RunnableConfig]], kwargs: dict[str, Any]
    ) -> list[Result]:
        link = await session.link()

        async def one(item: tuple[Any, RunnableConfig]) -> AIMessage:
            # The engine holds the item's permit while it runs (`PERMIT_HELD`): the model
            # call inside sends at once.
            return await self.ainvoke(item[0], item[1], **kwargs)

        def cost(item: tuple[Any, RunnableConfig]) -> Cost:
            try:
                messages = to_llmgather(self._convert_input(item[0]).to_messages())
            except (InvalidInputError, ValueError):
                return Cost(requests=1)  # the item fails in `ainvoke`, saying why
            return request_cost(
                messages, link.max_tokens(kwargs.get("max_tokens", self.max_tokens))
            )

        calls = (call_request(one, item, cost, unpack=False) for item in items)
        return await in_input_order(link.engine.map(calls))

    # -- tools and structured output --------------------------------------------------------

    def bind_tools(
        self,
        tools: Sequence[Any],
        *,
        tool_choice: Any = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Offer `tools` (LangChain tools, functions, pydantic models, schema dicts);
        `tool_choice` is "auto", "any" (or "required", True), "none", or a tool's name."""
        specs = [tool_spec(tool) for tool in tools]
        choice = tool_choice_value(tool_choice, specs)
        return self.bind(tools=specs, tool_choice=choice, **kwargs)

    def with_structured_output(
        self,
        schema: Any = None,
        *,
        include_raw: bool = False,
        method: str = "function_calling",
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """Answers shaped by `schema` (a pydantic model, a TypedDict, a JSON schema dict):
        `method` "function_calling" (a forced tool call), "json_schema" (the provider's JSON
        mode with the schema) or "json_mode" (any JSON object). `strict` is accepted for
        LangChain's signature; the schema is always sent whole."""
        if kwargs:
            raise InvalidInputError(f"unknown with_structured_output options: {sorted(kwargs)}")
        return structured(self, schema, method=method, include_raw=include_raw)

    # -- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the model's connections (and its embedded simulator); a later call reopens."""
        if self._session is not None:
            self._session.close()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.aclose()

    # -- plumbing ---------------------------------------------------------------------------

    def _target(self) -> Target:
        return self._resolve() if self._resolved is None else self._resolved

    def _resolve(self) -> Target:
        key = self.api_key.get_secret_value() if self.api_key else None
        return resolve_target(self.model, base_url=self.base_url, api_key=key, env=os.environ)

    def _limits(self) -> Limits:
        """`limits`, or the flat fields given (those left at their defaults count as unset)."""
        given = {
            name: getattr(self, name) for name in _FLAT_LIMITS if name in self.model_fields_set
        }
        return limits_given(self.limits, **given)

    def _open(self) -> Session:
        with _SESSION_LOCK:
            if self._session is None:
                target = self._target()
                limiter = own_or_shared(self._limits(), self.limiter, owner="the model")
                self._session = Session(target, limiter, lambda: self._link(target, limiter))
            return self._session

    def _link(self, target: Target, limiter: Any) -> Link:
        options = link_options(
            target,
            os.environ,
            api_key=self.api_key.get_secret_value() if self.api_key else None,
            base_url=self.base_url,
            workers=self._limits().concurrency,
            retry=None
            if self.max_retries is None
            else RetryPolicy(max_attempts=self.max_retries + 1),
            timeouts=None if self.timeout is None else Timeouts(read=self.timeout),
            simulator=self.simulator,
        )
        return Link(target, limiter, options)

    def _call(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> _Call:
        unknown = set(kwargs) - _CALL_OPTIONS
        if unknown:
            raise InvalidInputError(
                f"ChatLLMGather takes no call option {sorted(unknown)}; it takes "
                f"{', '.join(sorted(_CALL_OPTIONS))} and stop"
            )
        options = {"max_tokens": self.max_tokens, "temperature": self.temperature} | kwargs
        return _Call(
            messages=to_llmgather(messages),
            options={k: v for k, v in options.items() if v is not None and k != "model"},
            model=kwargs.get("model"),
            stop=stop if stop is not None else self.stop,
        )

    async def _complete(self, session: Session, call: _Call) -> Answer:
        link = await session.link()
        request = call.request_for(link)
        if PERMIT_HELD.get():
            completion = (await link.send(request)).completion
            return call.answer(completion, link.target)
        result = await link.engine.run_one(request)
        if result.exception is not None:
            raise result.exception
        return Answer(
            text=result.text or "",
            usage=result.usage,
            finish_reason=result.finish_reason,
            tool_calls=result.tool_calls,
            model=request.model or link.target.model,
        )

    async def _pieces(self, session: Session, call: _Call) -> AsyncIterator[str | Answer]:
        """The text pieces of one streamed answer, then the whole Answer."""
        link = await session.link()
        request = call.request_for(link)
        if PERMIT_HELD.get():
            async with link.open_stream(request) as live:
                async for piece in live:
                    yield piece
            yield call.answer(live.outcome().completion, link.target)
            return
        async for item in link.engine.stream(request, opener(link)):
            yield call.answer(item, link.target) if isinstance(item, Completion) else item

    def _result(self, answer: Answer, target: Target) -> ChatResult:
        message = ai_message(answer, target.provider)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _chunk(self, item: str | Answer, target: Target) -> ChatGenerationChunk:
        if isinstance(item, str):
            return ChatGenerationChunk(message=piece_chunk(item))
        return ChatGenerationChunk(message=last_chunk(item, target.provider))


@dataclass(frozen=True, slots=True)
class _Call:
    """One model call, ready to become a Request once the link (and its provider) is known."""

    messages: list[dict[str, Any]]
    options: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    stop: list[str] | None = None

    def request_for(self, link: Link) -> Request:
        request = prompt_request(Request(messages=tuple(self.messages)), self.options, link)
        changes: dict[str, Any] = {}
        if self.model:
            changes["model"] = self.model
        if self.stop:
            # Each provider takes stop sequences in a field of its own (registry's stop_field).
            *path, last = link.target.spec.stop_field
            extra: dict[str, Any] = {}
            inner = extra
            for key in path:
                inner = inner.setdefault(key, {})
            inner[last] = list(self.stop)
            changes["extra"] = extra
        return request.replace(**changes) if changes else request

    def answer(self, completion: Completion, target: Target) -> Answer:
        return Answer(
            text=completion.text,
            usage=completion.usage,
            finish_reason=completion.finish_reason,
            tool_calls=completion.tool_calls,
            model=completion.model or self.model or target.model,
        )
