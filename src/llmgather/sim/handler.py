"""The per-request path: key, body, fault, rate limits, then the answer on the latency model.

One `SimHandler` is the whole server behind aiohttp's low-level `web.Server`: no router and no
middleware, since every layer costs time on a path that must answer thousands of requests a
second. The provider differences live in the dialects; this module decides *what* to answer.
"""

from __future__ import annotations

import asyncio
import socket
import struct

import orjson
from aiohttp import web

from llmgather.sim.config import SimConfig
from llmgather.sim.dialects import BadRequest, Dialect, ErrorReply, SimRequest, route
from llmgather.sim.faults import (
    PREEMPT_FAULT,
    QUOTA_FAULT,
    SPEND_FAULT,
    STATUS_FAULTS,
    FaultPicker,
)
from llmgather.sim.latency import LatencyModel
from llmgather.sim.limits import Refusal, ServerLimits
from llmgather.sim.prompt_cache import PromptCache
from llmgather.sim.stats import LogEntry, SimStats
from llmgather.sim.structured import answer_for
from llmgather.sim.text import Answer
from llmgather.sim.wire import IdMaker

_JSON = "application/json"
_JSON_HEADERS = {"Content-Type": _JSON}
_LINGER_RST = struct.pack("ii", 1, 0)
# What a parser raises when a field holds a value of another type than the one it reads.
_WRONG_TYPE = (TypeError, ValueError, AttributeError, KeyError)
_WRONG_TYPE_MESSAGE = "The request body could not be read: a field has a value of the wrong type."


class SimHandler:
    """Answers every request of one simulator; owned by one event loop."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.stats = SimStats()
        self.limits = ServerLimits(
            rpm=config.rpm,
            rpd=config.rpd,
            tpm=config.tpm,
            itpm=config.itpm,
            otpm=config.otpm,
            burst_seconds=config.burst_seconds,
            day_seconds=config.day_seconds,
        )
        self._faults = FaultPicker(config.faults, config.seed)
        self._latency = LatencyModel(config.latency_ms, config.seed, config.latency_jitter)
        self._capacity = asyncio.Semaphore(config.capacity) if config.capacity else None
        self._ids = IdMaker()
        self._prompt_cache = PromptCache()
        # The key every request must carry (None: any), changed by `POST /_sim/key`.
        self.require_key = config.require_key
        # One event per stream being sent; a `preempt` arrival sets them all.
        self._streams: set[asyncio.Event] = set()
        # Set when the server shuts down, so a stalled request stops waiting at once.
        self.closing = asyncio.Event()

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        found = route(request.path)
        if found is None:
            return await self._control(request)
        dialect, model, path_stream = found
        entry = self.stats.begin(dialect.name, request.path)
        try:
            return await self._serve(request, dialect, model, path_stream, entry)
        finally:
            self.stats.end()

    async def _serve(
        self,
        request: web.BaseRequest,
        dialect: Dialect,
        model: str | None,
        path_stream: bool | None,
        entry: LogEntry,
    ) -> web.StreamResponse:
        """Method, key, body, then faults and rate limits (synchronous helpers), then the answer."""
        request_id = self._ids.make("req_")
        refused = self._refuse_unread(request, dialect, request_id)
        if refused is not None:
            return self._reply(entry, refused)
        try:
            body = orjson.loads(await request.read())
        except web.HTTPRequestEntityTooLarge:
            # Left to aiohttp, this would be a plain-text 413 that no provider's client parses.
            reply = dialect.body_too_large(self.config.max_body_bytes, request_id=request_id)
            return self._reply(entry, reply)
        except orjson.JSONDecodeError:
            message = "We could not parse the JSON body of your request."
            return self._reply(entry, dialect.error(400, message, request_id=request_id))
        try:
            req = _parse(dialect, body, request, model)
        except BadRequest as exc:
            return self._reply(entry, dialect.error(400, str(exc), request_id=request_id))
        if path_stream is not None:
            req.stream = path_stream
        entry.set_prompt(req.prompt)

        fault = self._faults.pick()
        if fault is not None:
            instead = self._fault_reply(request, dialect, req, entry, fault, request_id)
            if instead is not None:
                return instead

        limits = self.limits
        if limits:
            refusal = limits.admit(req.input_tokens, req.output_estimate)
            if refusal is not None:
                return self._rate_limited(dialect, req, refusal, entry, request_id)
        if self._faults.preempts():
            self._preempt(entry)
        req.cache = self._prompt_cache.use(req.model, req.messages)
        answer = answer_for(
            req.prompt,
            self.config.seed,
            req.max_tokens,
            req.tools,
            req.tool_choice,
            req.json_schema,
        )
        try:
            if self._capacity is None:
                return await self._answer(request, dialect, req, answer, entry, fault, request_id)
            async with self._capacity:
                return await self._answer(request, dialect, req, answer, entry, fault, request_id)
        finally:
            if limits:
                limits.settle(req.output_estimate, answer.output_tokens)

    def _refuse_unread(
        self, request: web.BaseRequest, dialect: Dialect, request_id: str
    ) -> ErrorReply | None:
        """The error for a request refused before its body is read (not a POST, or without the
        key the simulator requires), or None."""
        if request.method != "POST":
            message = f"Invalid URL ({request.method} {request.path})"
            return dialect.error(404, message, request_id=request_id)
        required = self.require_key
        if required is not None:
            key = dialect.api_key(request)
            if key != required:
                return dialect.auth_error(key, request_id=request_id)
        return None

    def _fault_reply(
        self,
        request: web.BaseRequest,
        dialect: Dialect,
        req: SimRequest,
        entry: LogEntry,
        fault: str,
        request_id: str,
    ) -> web.Response | None:
        """Count the fault; the reply that replaces the answer (a reset, 429, quota or status
        error), or None for a fault that shapes the answer itself (stall, cut, malformed…)."""
        self.stats.fault(entry, fault)
        if fault == "reset":
            return _reset(request)
        if fault == "429":
            retry = self.config.fault_retry_after_s
            reply = dialect.injected_rate_limit(req, retry, request_id=request_id)
            return self._reply(entry, reply)
        if fault == QUOTA_FAULT:
            return self._reply(entry, dialect.quota_exhausted(req, request_id=request_id))
        if fault == SPEND_FAULT:
            return self._reply(entry, dialect.spend_limited(req, request_id=request_id))
        if fault in STATUS_FAULTS:
            return self._reply(entry, dialect.error(int(fault), request_id=request_id))
        return None

    def _rate_limited(
        self,
        dialect: Dialect,
        req: SimRequest,
        refusal: Refusal,
        entry: LogEntry,
        request_id: str,
    ) -> web.Response:
        """The dialect's 429 for a request the limits refused, without the limit headers when
        the simulator announces no limits."""
        reply = dialect.rate_limited(req, refusal, request_id=request_id)
        if not self.config.limit_headers:
            _strip_limit_headers(dialect, reply.headers)
        return self._reply(entry, reply)

    async def _answer(
        self,
        request: web.BaseRequest,
        dialect: Dialect,
        req: SimRequest,
        answer: Answer,
        entry: LogEntry,
        fault: str | None,
        request_id: str,
    ) -> web.StreamResponse:
        announce = self.limits and self.config.limit_headers
        headers = dialect.response_headers(request_id, self.limits.state() if announce else None)
        if fault == "stall":
            await self._stall()
        ttft, per_token = self._latency.draw()
        if req.stream:
            return await self._stream(
                request, dialect, req, answer, entry, fault, headers, ttft, per_token
            )
        if ttft:
            await asyncio.sleep(ttft + per_token * answer.output_tokens)
        body = dialect.render(req, answer, self._ids)
        headers["Content-Type"] = _JSON
        self.stats.answer(entry, 200)
        if fault == "malformed":
            # A 200 whose JSON stops halfway, with an honest Content-Length.
            return web.Response(body=body[: len(body) // 2], headers=headers)
        if fault == "cut":
            return await _cut_plain(request, body, headers)
        return web.Response(body=body, headers=headers)

    async def _stream(
        self,
        request: web.BaseRequest,
        dialect: Dialect,
        req: SimRequest,
        answer: Answer,
        entry: LogEntry,
        fault: str | None,
        headers: dict[str, str],
        ttft: float,
        per_token: float,
    ) -> web.StreamResponse:
        pieces = answer.chunks()
        events = dialect.stream(req, answer, pieces, self._ids)
        chunks, tail = events.chunks, events.tail
        if fault in ("cut", "malformed", "done_early"):
            # Some text arrives, then the stream ends cleanly without its finish: with no
            # terminal event (cut), after one that does not parse, or after the terminal
            # event alone (done_early).
            chunks = chunks[: max(1, len(chunks) // 2)]
            tail = {
                "malformed": [dialect.malformed_event()],
                "done_early": dialect.early_end(),
            }.get(fault, [])
        headers["Content-Type"] = dialect.stream_content_type
        headers["Cache-Control"] = "no-cache"
        response = web.StreamResponse(headers=headers)
        self.stats.answer(entry, 200)
        await response.prepare(request)
        if not ttft:
            await response.write(b"".join([*events.head, *chunks, *tail]))
            await response.write_eof()
            return response
        preempted = asyncio.Event()
        self._streams.add(preempted)
        try:
            # A preempted stream stops at its next frame and ends cleanly without its
            # terminal event, exactly as a `cut` one does.
            await asyncio.sleep(ttft)
            if events.head and not preempted.is_set():
                await response.write(b"".join(events.head))
            # A structured answer has more frames than pieces (a tool call's start): those
            # go without a pause of their own.
            for i, frame in enumerate(chunks):
                if preempted.is_set():
                    break
                await response.write(frame)
                words = len(pieces[i].split()) if i < len(pieces) else 0
                await asyncio.sleep(per_token * words)
            if tail and not preempted.is_set():
                await response.write(b"".join(tail))
        finally:
            self._streams.discard(preempted)
        if preempted.is_set():
            self.stats.fault(entry, "preempted")
        await response.write_eof()
        return response

    def _preempt(self, entry: LogEntry) -> None:
        """Cut every stream in progress, as llama-cpp-python's server does on a new request."""
        self.stats.fault(entry, PREEMPT_FAULT)
        for stream in self._streams:
            stream.set()
        self._streams.clear()

    async def _stall(self) -> None:
        try:
            await asyncio.wait_for(self.closing.wait(), self.config.stall_s)
        except TimeoutError:
            pass

    def _reply(self, entry: LogEntry, reply: ErrorReply) -> web.Response:
        self.stats.answer(entry, reply.status)
        headers = reply.headers
        headers["Content-Type"] = _JSON
        return web.Response(status=reply.status, body=reply.body, headers=headers)

    async def _control(self, request: web.BaseRequest) -> web.Response:
        """The simulator's own endpoints, neither rate-limited nor faulted."""
        path, method = request.path, request.method
        if path == "/_sim/stats" and method == "GET":
            return _json(self.stats.snapshot())
        if path == "/_sim/log" and method == "GET":
            return _json(self.stats.log())
        if path == "/_sim/reset" and method == "POST":
            self.stats.reset()
            return _json({"ok": True})
        if path == "/_sim/limits" and method == "POST":
            return await self._change_limits(request)
        if path == "/_sim/limits" and method == "GET":
            return _json(self._limits_now())
        if path == "/_sim/key" and method == "POST":
            return await self._change_key(request)
        error = {
            "code": 404,
            "message": f"No simulated API at {method} {path}",
            "status": "NOT_FOUND",
        }
        return web.Response(status=404, body=orjson.dumps({"error": error}), headers=_JSON_HEADERS)

    async def _change_limits(self, request: web.BaseRequest) -> web.Response:
        """`{"rpm": 300, "tpm": null}`: change the named limits now (null removes one)."""
        try:
            changes = orjson.loads(await request.read())
            if not isinstance(changes, dict):
                raise ValueError('the body must be a JSON object such as {"rpm": 300}')
            self.limits.change(changes)
        except (orjson.JSONDecodeError, ValueError) as error:
            return web.Response(
                status=400, body=orjson.dumps({"error": str(error)}), headers=_JSON_HEADERS
            )
        return _json(self._limits_now())

    async def _change_key(self, request: web.BaseRequest) -> web.Response:
        """`{"require_key": "new key"}` (or null, for any): the key the API takes from now on,
        as when a provider's key is revoked or restored while a client runs."""
        try:
            change = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            change = None
        key = change.get("require_key", False) if isinstance(change, dict) else False
        if key is not None and (not isinstance(key, str) or not key):
            message = 'the body must be {"require_key": "a key"} or {"require_key": null}'
            return web.Response(
                status=400, body=orjson.dumps({"error": message}), headers=_JSON_HEADERS
            )
        self.require_key = key
        return _json({"ok": True})  # the key itself is never echoed

    def _limits_now(self) -> dict[str, int]:
        return {budget.name: budget.limit for budget in self.limits.state().budgets}


def _parse(
    dialect: Dialect, body: object, request: web.BaseRequest, model: str | None
) -> SimRequest:
    """The body read as the dialect's request; a field of the wrong type that the parser did
    not check (`"text": 5`, a list as a role) raises BadRequest, so the client gets the
    provider's own 400: aiohttp's plain-text 500 is retried by every client and would never be
    counted as answered."""
    try:
        return dialect.parse(body, request, model)
    except _WRONG_TYPE as exc:
        raise BadRequest(_WRONG_TYPE_MESSAGE) from exc


def _strip_limit_headers(dialect: Dialect, headers: dict[str, str]) -> None:
    prefix = dialect.limit_header_prefix
    if prefix:
        for name in [name for name in headers if name.startswith(prefix)]:
            del headers[name]


def _json(value: object) -> web.Response:
    return web.Response(body=orjson.dumps(value), headers=_JSON_HEADERS)


def _reset(request: web.BaseRequest) -> web.Response:
    """Drop the connection with a TCP RST and no response at all."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Linger 0 makes close() send RST, the way a crashed proxy or load balancer does.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        transport.abort()
    # aiohttp fails to write this to the closed transport and drops it quietly.
    return web.Response(status=500)


async def _cut_plain(
    request: web.BaseRequest, body: bytes, headers: dict[str, str]
) -> web.StreamResponse:
    """Declare the full Content-Length, send half the body, then close the connection."""
    response = web.StreamResponse(headers=headers)
    response.content_length = len(body)
    response.force_close()
    await response.prepare(request)
    await response.write(body[: len(body) // 2])
    transport = request.transport
    if transport is not None:
        transport.close()
    return response
