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

from llmgather._errors import InvalidInputError
from llmgather._types import Completion
from llmgather.limits import Cost
from llmgather.service.dialects.base import FrontDialect, Untranslatable
from llmgather.service.errors import Refusal, refusal_for
from llmgather.service.queueing import ClientGone, GatewayQueue, QueueFull
from llmgather.service.upstream import StreamPump, Upstream

JSON = "application/json"


class Gateway:
    def __init__(self, upstream: Upstream, queue: GatewayQueue) -> None:
        self.upstream = upstream
        self.queue = queue

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
                http = upstream.relayed(body, model=model or upstream.model, stream=stream)
            else:
                http = upstream.translated(front.to_request(data), stream=stream)
        except (Untranslatable, InvalidInputError) as exc:
            return error_response(front, Refusal(400, str(exc)))
        cost = front.cost(data)
        sent = asyncio.Event()
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            with self.queue.admitted(cost):
                if stream:
                    return await self._stream(front, data, http, cost, relay, sent, gone)
                async with upstream.complete(http, cost, relay=relay, sent=sent) as task:
                    await self.queue.until_sent(task, sent, gone, cost)
                    await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
                    if not task.done():
                        raise ClientGone  # leaving the block cancels the call
                    result = task.result()
        except QueueFull as exc:
            return error_response(front, Refusal(429, _queue_message(exc), exc.retry_after))
        except ClientGone:
            return Response(status_code=499)  # no one is there to read it
        finally:
            gone.cancel()
        if not result.ok:
            assert result.exception is not None
            return error_response(front, refusal_for(result.exception))
        if relay:
            return Response(result.value.body, media_type=JSON)
        completion = Completion(
            text=result.text or "", usage=result.usage, finish_reason=result.finish_reason
        )
        return json_response(front.answer(completion, model=upstream.model))

    async def _stream(
        self,
        front: FrontDialect,
        data: Mapping[str, Any],
        http: Any,
        cost: Cost,
        relay: bool,
        sent: asyncio.Event,
        gone: asyncio.Future[Any],
    ) -> Response:
        pump = self.upstream.stream(http, cost, relay=relay, sent=sent)
        try:
            assert pump.task is not None
            await self.queue.until_sent(pump.task, sent, gone, cost)
            first = asyncio.ensure_future(pump.next())
            await asyncio.wait((first, gone), return_when=asyncio.FIRST_COMPLETED)
            if not first.done():
                first.cancel()
                raise ClientGone
            try:
                head = first.result()
            except StopAsyncIteration:
                head = None
        except (QueueFull, ClientGone):
            await pump.aclose()
            raise
        except Exception as exc:  # failed before anything reached the client: a plain error
            await pump.aclose()
            return error_response(front, refusal_for(exc))
        writer = None if relay else front.stream_writer(data, model=self.upstream.model)
        return StreamingResponse(
            _events(front, pump, head, writer),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache"},
        )


async def _events(
    front: FrontDialect, pump: StreamPump, head: Any, writer: Any
) -> AsyncIterator[bytes]:
    """The stream's events as the client's dialect has them; closing it (the client left)
    stops the upstream's stream."""
    try:
        if writer is not None:
            yield writer.start()
        piece = head
        while piece is not None:
            yield piece if writer is None else writer.piece(piece)
            try:
                piece = await pump.next()
            except StopAsyncIteration:
                piece = None
        if writer is not None:
            yield writer.end(pump.completion)
    except Exception as exc:  # cut after its first piece: said in the stream, as the APIs do
        refusal = refusal_for(exc)
        yield front.stream_error(refusal.status, refusal.message)
    finally:
        await pump.aclose()


async def _disconnected(request: HttpRequest) -> None:
    """Returns when the client goes away (its request body has been read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def error_response(front: FrontDialect, refusal: Refusal) -> Response:
    headers = {}
    if refusal.retry_after is not None:
        headers["retry-after"] = str(max(1, round(refusal.retry_after)))
    return Response(
        orjson.dumps(front.error(refusal.status, refusal.message)),
        status_code=refusal.status,
        media_type=JSON,
        headers=headers,
    )


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type=JSON)


def _queue_message(exc: QueueFull) -> str:
    return (
        "llmgather's queue for the shared rate limit is full: this request would wait longer "
        f"than the gateway's queue timeout; retry in {exc.retry_after:.0f} s"
    )
