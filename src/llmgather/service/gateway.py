"""The gateway's one request path, shared by the three dialects' routes:

    client body ─▶ relay (same dialect) or translate ─▶ the queue (bounded wait for the shared
    limits) ─▶ the engine (limits, retries) ─▶ the answer, or the error, in the client's dialect

A client that disconnects while queued is never sent upstream; one that disconnects while its
stream is relayed stops the upstream's stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
from starlette.requests import Request as HttpRequest
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from llmgather._errors import InvalidInputError
from llmgather._redact import Redactor
from llmgather._types import Completion, Result
from llmgather.limits import Cost
from llmgather.limits.tokens import request_cost
from llmgather.pricing.reserve import choices
from llmgather.service.dialects.base import FrontDialect, StreamWriter, Untranslatable
from llmgather.service.errors import ErrorAnswer, error_answer_for
from llmgather.service.queueing import ClientGone, Departure, GatewayQueue, QueueFull
from llmgather.service.routes.bodies import BodyTooLarge, NotAnObject, read_json
from llmgather.service.upstream import StreamPump, Upstream
from llmgather.transport import HttpRequest as UpstreamRequest

JSON = "application/json"
# What a body that is not what its dialect reads can break while its cost is estimated.
_SHAPE_ERRORS = (KeyError, IndexError, TypeError, ValueError, AttributeError)


class Gateway:
    def __init__(self, upstream: Upstream, queue: GatewayQueue) -> None:
        self.upstream = upstream
        self.queue = queue

    async def serve(
        self,
        front: FrontDialect,
        request: HttpRequest,
        *,
        model: str | None = None,
        stream: bool | None = None,
    ) -> Response:
        """A dialect's route: the body read, then `handle`. `model` and `stream` are the
        path's when it says them (Gemini's), else the body's `model` and `stream` fields."""
        try:
            body, data = await read_json(request)
        except BodyTooLarge as exc:
            return error_response(front, ErrorAnswer(413, str(exc)))
        except NotAnObject as exc:
            return error_response(front, ErrorAnswer(400, str(exc)))
        if model is None:
            named = data.get("model")
            model = named if isinstance(named, str) and named else None
        if stream is None:
            stream = data.get("stream") is True
        return await self.handle(front, request, body=body, data=data, model=model, stream=stream)

    async def handle(
        self,
        front: FrontDialect,
        request: HttpRequest,
        *,
        body: bytes,
        data: Mapping[str, Any],
        model: str | None,
        stream: bool,
    ) -> Response:
        upstream = self.upstream
        relay = front.name == upstream.target.provider
        try:
            if relay:
                sent_model = model or upstream.model
                http = upstream.relayed(body, model=sent_model, stream=stream)
                cost = upstream.capped(
                    front.cost(data), http, model=sent_model, choices=choices(data)
                )
            else:
                sent_model = upstream.model
                translated = upstream.prepared(front.to_request(data))
                http = upstream.translated(translated, stream=stream)
                # What the upstream is asked for (its default max tokens included) is reserved.
                cost = request_cost(translated.messages, translated.max_tokens)
                cost = upstream.capped(cost, http, choices=choices(translated.extra))
        except (Untranslatable, InvalidInputError) as exc:
            return error_response(front, ErrorAnswer(400, str(exc)))
        except _SHAPE_ERRORS as exc:
            message = f"the body is not a valid request of this API ({type(exc).__name__})"
            return error_response(front, ErrorAnswer(400, message))
        try:
            if stream:
                return await self._stream(front, request, data, http, cost, relay, sent_model)
            result = await self.call(request, http, cost, relay=relay, model=sent_model)
        except QueueFull as exc:
            return queue_full_response(front, exc)
        except ClientGone:
            return Response(status_code=499)  # no one is there to read it
        if not result.ok:
            assert result.exception is not None
            return error_response(front, error_answer_for(result.exception))
        redactor = upstream.redactor  # an upstream may echo the request's key in its answer
        if relay:
            return Response(redactor.body(result.value.body), media_type=JSON)
        completion = Completion(
            text=redactor.known(result.text or ""),
            usage=result.usage,
            finish_reason=result.finish_reason,
        )
        return json_response(front.answer(completion, model=upstream.model))

    async def call(
        self,
        request: HttpRequest,
        http: UpstreamRequest,
        cost: Cost,
        *,
        relay: bool,
        model: str | None = None,
    ) -> Result:
        """One call through the queue and the engine (`cost` capped by `Upstream.capped`;
        `model` the one sent, for its price). Raises QueueFull (refused at once, or
        withdrawn unsent when the queue timeout passed) or ClientGone (withdrawn unsent)."""
        queue = self.queue
        try:
            with queue.admitted(cost) as ticket:
                async with asyncio.timeout(queue.timeout_s) as deadline:
                    departure = Departure(request, ticket, deadline)
                    return await self.upstream.complete(
                        http, cost, relay=relay, departure=departure, model=model
                    )
        except TimeoutError:  # the queue's deadline, lifted once sent
            raise queue.refused_late(cost) from None

    async def _stream(
        self,
        front: FrontDialect,
        request: HttpRequest,
        data: Mapping[str, Any],
        http: UpstreamRequest,
        cost: Cost,
        relay: bool,
        model: str,
    ) -> Response:
        """The stream's first piece (a relayed stream's first events that carry some of the
        answer, a role chunk not yet) is awaited here, within the queue's deadline: a failure
        before it, retries spent, is a plain error answer; after it, the events go out as
        they come, and a failure is an error event of the client's dialect."""
        queue = self.queue
        pump: StreamPump | None = None
        try:
            with queue.admitted(cost) as ticket:
                async with asyncio.timeout(queue.timeout_s) as deadline:
                    departure = Departure(request, ticket, deadline)
                    edges = front if relay else None
                    pump = self.upstream.stream(
                        http, cost, relay=edges, departure=departure, model=model
                    )
                    head = await pump.next()
        except TimeoutError:
            if pump is not None:
                await pump.aclose()
            raise queue.refused_late(cost) from None
        except BaseException as exc:
            if pump is not None:
                await pump.aclose()
            if isinstance(exc, Exception) and not isinstance(exc, (QueueFull, ClientGone)):
                return error_response(front, error_answer_for(exc))  # nothing reached the client
            raise
        writer = None if relay else front.stream_writer(data, model=self.upstream.model)
        return _EventStream(front, pump, head, writer, self.upstream.redactor)


class _EventStream(StreamingResponse):
    """The events of one streamed answer. However the response ends (the stream's end, the
    client gone, the server stopping, even before its first event is written), the upstream's
    stream is closed and its permit given back."""

    def __init__(
        self,
        front: FrontDialect,
        pump: StreamPump,
        head: Any,
        writer: StreamWriter | None,
        redactor: Redactor,
    ) -> None:
        super().__init__(
            _events(front, pump, head, writer, redactor),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache"},
        )
        self._pump = pump

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._pump.aclose()


async def _events(
    front: FrontDialect,
    pump: StreamPump,
    head: Any,
    writer: StreamWriter | None,
    redactor: Redactor,
) -> AsyncIterator[bytes]:
    """The stream's events as the client's dialect has them, without the secrets the
    service knows (an upstream may echo the request's key)."""
    scrubber = redactor.stream()
    try:
        if writer is not None:
            yield writer.start()
        piece = head
        while piece is not None:
            if writer is not None:
                yield writer.piece(redactor.known(piece))
            elif relayed := scrubber.feed(piece):
                yield relayed
            piece = await pump.next()
        if rest := scrubber.flush():
            yield rest
        if writer is not None:
            yield writer.end(pump.completion)
    except Exception as exc:  # cut after its first piece: said in the stream, as the APIs do
        if rest := scrubber.flush():
            yield rest
        answer = error_answer_for(exc)
        yield front.stream_error(answer.status, answer.message)


def error_response(front: FrontDialect, answer: ErrorAnswer) -> Response:
    headers = {}
    if answer.retry_after is not None:
        headers["retry-after"] = str(max(1, round(answer.retry_after)))
    return Response(
        orjson.dumps(front.error(answer.status, answer.message)),
        status_code=answer.status,
        media_type=JSON,
        headers=headers,
    )


def queue_full_response(front: FrontDialect, exc: QueueFull) -> Response:
    message = (
        "llmgather's queue for the shared rate limit is full: this request would wait longer "
        f"than the gateway's queue timeout; retry in {exc.retry_after:.0f} s"
    )
    return error_response(front, ErrorAnswer(429, message, exc.retry_after))


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type=JSON)
