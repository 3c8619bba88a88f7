"""The default transport (`Http11Transport`) against servers written here byte by byte: how an
answer may be framed (length, chunks, the connection's end), compressed answers, keep-alive and
its limits, timeouts, streams left early, bad headers, and TLS with a throwaway CA. Each test
runs on asyncio's loop and on uvloop's (this directory's conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import random
import socket
import ssl
import struct
import threading
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme

from llmgather import APIConnectionError, ConfigurationError, RequestTimeoutError, Timeouts
from llmgather.transport import Http11Transport, HttpRequest, Transport
from llmgather.transport.http11.connection import STREAM_BUFFER

Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Seen"], Awaitable[None]]


@dataclass
class Seen:
    """What a test server saw: connections opened, request heads read, most at once."""

    connections: int = 0
    open_now: int = 0
    most_open: int = 0
    heads: list[bytes] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)


async def read_request(reader: asyncio.StreamReader, seen: Seen) -> bytes | None:
    """One request's head and body; None when the client closed the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    seen.heads.append(head)
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return await reader.readexactly(length)


def answer(body: bytes, *extra: bytes, status: bytes = b"200 OK") -> bytes:
    headers = b"".join(h + b"\r\n" for h in extra)
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n" + headers
        + b"content-length: %d\r\n\r\n" % len(body) + body
    )  # fmt: skip


@contextlib.asynccontextmanager
async def server(
    serve: Serve, *, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[str, Seen]]:
    seen = Seen()

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.connections += 1
        seen.open_now += 1
        seen.most_open = max(seen.most_open, seen.open_now)
        try:
            await serve(reader, writer, seen)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            seen.open_now -= 1
            writer.close()
            seen.closed.set()

    listening = await asyncio.start_server(connection, "127.0.0.1", 0, ssl=tls)
    port = listening.sockets[0].getsockname()[1]
    scheme = "https" if tls else "http"
    try:
        yield f"{scheme}://127.0.0.1:{port}", seen
    finally:
        listening.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(listening.wait_closed(), 2)


async def echo_forever(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen
) -> None:
    while (body := await read_request(reader, seen)) is not None:
        writer.write(answer(b'{"echo": ' + (body or b"null") + b"}"))
        await writer.drain()


def post(url: str, body: bytes = b'{"n": 1}', **headers: str) -> HttpRequest:
    return HttpRequest("POST", url, {"content-type": "application/json", **headers}, body)


def test_it_satisfies_the_transport_protocol() -> None:
    assert isinstance(Http11Transport(), Transport)


async def test_requests_reuse_one_kept_alive_connection() -> None:
    transport = Http11Transport()
    async with server(echo_forever) as (url, seen):
        for n in range(20):
            response = await transport.send(post(url + "/v1/chat?x=1", b'{"n": %d}' % n))
            assert response.status == 200
            assert response.body == b'{"echo": {"n": %d}}' % n
        await transport.aclose()
    assert seen.connections == 1
    head = seen.heads[0].decode()
    assert head.startswith("POST /v1/chat?x=1 HTTP/1.1\r\n")
    assert f"host: {url.removeprefix('http://')}\r\n" in head
    assert "Content-Length: 8\r\n" in head
    assert "accept-encoding: gzip, deflate\r\n" in head


async def test_headers_are_read_whatever_their_case() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen) -> None:
        await read_request(reader, seen)
        writer.write(answer(b"{}", b"Retry-After: 7", b"X-RateLimit-Limit-Requests: 600"))

    transport = Http11Transport()
    async with server(serve) as (url, _):
        response = await transport.send(post(url))
    await transport.aclose()
    assert response.headers["retry-after"] == "7"
    assert response.headers.get("x-ratelimit-limit-requests") == "600"
    assert response.headers["Content-Type"] == "application/json"


async def test_a_chunked_answer_that_arrives_a_few_bytes_at_a_time() -> None:
    body = b'{"text": "' + b"x" * 3000 + b'"}'

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen) -> None:
        while await read_request(reader, seen) is not None:
            wire = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
            for start in range(0, len(body), 700):
                piece = body[start : start + 700]
                wire += b"%x\r\n" % len(piece) + piece + b"\r\n"
            wire += b"0\r\n\r\n"
            for start in range(0, len(wire), 13):  # split everywhere, heads included
                writer.write(wire[start : start + 13])
                await writer.drain()

    transport = Http11Transport()
    async with server(serve) as (url, seen):
        first = await transport.send(post(url))
        second = await transport.send(post(url))
    await transport.aclose()
    assert first.body == body and second.body == body
    assert seen.connections == 1  # a chunked answer ends cleanly: the connection is kept


async def test_an_answer_without_a_length_ends_with_its_connection() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen) -> None:
        await read_request(reader, seen)
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n" + b"a" * 5000)
        await writer.drain()

    transport = Http11Transport()
    async with server(serve) as (url, seen):
        first = await transport.send(post(url))
        second = await transport.send(post(url))
    await transport.aclose()
    assert first.body == second.body == b"a" * 5000
    assert seen.connections == 2
    assert transport.stale_retries == 0


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        (b"gzip", gzip.compress),
        (b"deflate", zlib.compress),
        (b"deflate", lambda data: zlib.compress(data, wbits=-zlib.MAX_WBITS)),  # raw deflate
    ],
)
async def test_compressed_answers_are_decoded(
    encoding: bytes, compress: Callable[[bytes], bytes]
) -> None:
    body = b'{"text": "' + b"compressible " * 500 + b'"}'

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen) -> None:
        while await read_request(reader, seen) is not None:
            writer.write(answer(compress(body), b"content-encoding: " + encoding))

    transport = Http11Transport()
    async with server(serve) as (url, _):
        plain = await transport.send(post(url))
        async with transport.stream(post(url)) as streamed:
            pieces = [chunk async for chunk in streamed.iter_bytes()]
    await transport.aclose()
    assert plain.body == body
    assert b"".join(pieces) == body


@pytest.mark.parametrize(
    ("wire", "says"),
    [
        (answer(b"not gzip at all", b"content-encoding: gzip"), "compressed answer is corrupt"),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n" + b"x" * 10,
            "middle of the response body",
        ),
        (b"HTTP/1.1 200 OK\r\ncontent-le", "middle of the response head"),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "not valid HTTP"),
    ],
    ids=["corrupt gzip", "body cut short", "head cut short", "not HTTP"],
)
async def test_a_broken_answer_is_a_connection_error(wire: bytes, says: str) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen) -> None:
        await read_request(reader, seen)
        writer.write(wire)
        await writer.drain()  # and close

    transport = Http11Transport()
    async with server(serve) as (url, _):
        with pytest.raises(APIConnectionError, match=says):
            await transport.send(post(url))
    await transport.aclose()


async def test_a_connection_closed_by_the_server_while_idle_is_not_reused() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen) -> None:
        await read_request(reader, seen)
        writer.write(answer(b"{}"))  # says keep-alive, then closes: an idle timeout
        await writer.drain()

    transport = Http11Transport()
    async with server(serve) as (url, seen):
        await transport.send(post(url))
        await asyncio.wait_for(seen.closed.wait(), 2)
        for _ in range(200):  # until the FIN reaches the client and the pool counts it out
            if transport._pool._open == 0:
                break
            await asyncio.sleep(0.01)
        response = await transport.send(post(url))
    await transport.aclose()
    assert response.status == 200
    assert seen.connections == 2
    assert transport.stale_retries == 0  # noticed closed in the pool, not by a failed write


async def test_a_silent_server_times_out_and_its_connection_is_dropped() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen) -> None:
        if len(seen.heads) == 0:
            await read_request(reader, seen)
            await asyncio.sleep(5)  # never answers the first request
        else:
            await echo_forever(reader, writer, seen)

    transport = Http11Transport(timeouts=Timeouts(read=0.2))
    async with server(serve) as (url, seen):
        with pytest.raises(RequestTimeoutError):
            await transport.send(post(url))
        response = await transport.send(post(url))
    await transport.aclose()
    assert response.status == 200
    assert seen.connections == 2  # the timed-out connection was not handed out again


async def test_a_stream_may_outlast_the_timeout_while_it_keeps_talking() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen) -> None:
        await read_request(reader, seen)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n")
        writer.write(b"transfer-encoding: chunked\r\n\r\n")
        for n in range(6):
            await asyncio.sleep(0.1)
            event = b"data: %d\n\n" % n
            writer.write(b"%x\r\n" % len(event) + event + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    transport = Http11Transport(timeouts=Timeouts(read=0.3))  # the stream lasts ~0.6 s
    async with server(serve) as (url, _):
        async with transport.stream(post(url)) as streamed:
            assert streamed.status == 200
            body = b"".join([chunk async for chunk in streamed.iter_bytes()])
    await transport.aclose()
    assert body == b"".join(b"data: %d\n\n" % n for n in range(6))


async def test_a_stream_that_falls_silent_times_out() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen) -> None:
        await read_request(reader, seen)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\ndata: \r\n")
        await writer.drain()
        await asyncio.sleep(5)

    # A second: the connect and the first chunk count against it too, and a loaded machine
    # (the suite's four workers on two cores) took more than 0.2 s for them.
    transport = Http11Transport(timeouts=Timeouts(read=1.0))
    async with server(serve) as (url, _):
        async with transport.stream(post(url)) as streamed:
            chunks = streamed.iter_bytes()
            assert await anext(chunks) == b"data: "
            with pytest.raises(RequestTimeoutError, match="silent"):
                await anext(chunks)
    await transport.aclose()


async def test_a_stream_left_early_closes_its_connection_and_the_next_request_is_fine() -> None:
    event = b"data: " + b"y" * 1000 + b"\n\n"

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen) -> None:
        if len(seen.heads) == 0:
            await read_request(reader, seen)
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            for _ in range(2000):  # ~2 MB: more than the client buffers before pushing back
                writer.write(b"%x\r\n" % len(event) + event + b"\r\n")
                await writer.drain()
        else:
            await echo_forever(reader, writer, seen)

    transport = Http11Transport()
    async with server(serve) as (url, seen):
        async with transport.stream(post(url)) as streamed:
            async for _ in streamed.iter_bytes():
                break
        await asyncio.wait_for(seen.closed.wait(), 2)  # the server saw the client leave
        response = await transport.send(post(url))
    await transport.aclose()
    assert response.status == 200
    assert seen.connections == 2


async def test_a_large_stream_read_slowly_arrives_whole() -> None:
    events = [b"data: %d %s\n\n" % (n, b"z" * 2000) for n in range(400)]  # ~800 kB

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen) -> None:
        await read_request(reader, seen)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for event in events:
            writer.write(b"%x\r\n" % len(event) + event + b"\r\n")
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    transport = Http11Transport()
    received = []
    async with server(serve) as (url, _):
        async with transport.stream(post(url)) as streamed:
            async for chunk in streamed.iter_bytes():
                received.append(chunk)
                if len(received) % 20 == 0:
                    await asyncio.sleep(0.005)  # a reader behind the server: reading pauses
    await transport.aclose()
    assert b"".join(received) == b"".join(events)


async def test_no_more_connections_than_the_limit() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen) -> None:
        while await read_request(reader, seen) is not None:
            await asyncio.sleep(0.02)
            writer.write(answer(b"{}"))

    transport = Http11Transport(max_connections=3)
    async with server(serve) as (url, seen):
        responses = await asyncio.gather(*(transport.send(post(url)) for _ in range(30)))
    await transport.aclose()
    assert [r.status for r in responses] == [200] * 30
    assert seen.most_open == 3
    assert seen.connections == 3  # each kept and reused, not closed to make room


async def test_a_refused_connection_names_the_address() -> None:
    async with server(echo_forever) as (url, _):
        pass  # closed: its port now refuses
    transport = Http11Transport()
    with pytest.raises(APIConnectionError, match=r"cannot connect to 127\.0\.0\.1:\d+"):
        await transport.send(post(url))
    await transport.aclose()


async def test_a_header_with_a_line_break_is_refused_without_showing_its_value() -> None:
    transport = Http11Transport()
    async with server(echo_forever) as (url, seen):
        with pytest.raises(ConfigurationError) as refused:
            await transport.send(post(url, authorization="Bearer sk-secret\n"))
    await transport.aclose()
    assert "'authorization'" in str(refused.value)
    assert "sk-secret" not in str(refused.value)
    assert seen.heads == []


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://127.0.0.1/v1?key=sk-secret", "http://host"),
        ("127.0.0.1:8080/v1?key=sk-secret", "http://host"),
        ("http://127.0.0.1:port/v1?key=sk-secret", "port is not a number"),
    ],
)
async def test_a_url_llmgather_cannot_send_to_is_refused_without_quoting_it(
    url: str, says: str
) -> None:
    transport = Http11Transport()
    with pytest.raises(ConfigurationError, match=says) as refused:
        await transport.send(post(url))
    assert "sk-secret" not in str(refused.value)


async def test_aclose_closes_every_connection() -> None:
    transport = Http11Transport()
    async with server(echo_forever) as (url, seen):
        await asyncio.gather(*(transport.send(post(url)) for _ in range(4)))
        assert seen.open_now >= 1
        await transport.aclose()
        for _ in range(100):
            if seen.open_now == 0:
                break
            await asyncio.sleep(0.01)
        assert seen.open_now == 0


# -- TLS ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


def tls_server_context(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    return context


async def test_tls_to_a_server_whose_authority_is_trusted(
    authority: trustme.CA, monkeypatch: pytest.MonkeyPatch
) -> None:
    with authority.cert_pem.tempfile() as ca_file:
        monkeypatch.setenv("SSL_CERT_FILE", ca_file)  # how a user points at a private CA
        transport = Http11Transport()
        async with server(echo_forever, tls=tls_server_context(authority)) as (url, seen):
            assert url.startswith("https://")
            first = await transport.send(post(url + "/v1"))
            second = await transport.send(post(url + "/v1"))
        await transport.aclose()
    assert first.body == second.body == b'{"echo": {"n": 1}}'
    assert seen.connections == 1


def test_aclose_ends_a_tls_close_its_peer_never_answers(
    authority: trustme.CA, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A TLS close waits for the peer's own close_notify; a peer that never sends it (a stuck
    # server, a slow proxy tunnel) must not leave the socket open after aclose: uvloop then
    # refuses to close its loop (OSError EBUSY), asyncio's reports an unclosed transport. The
    # server runs on a thread of its own, so the loop closed holds only the client's sockets.
    uvloop = pytest.importorskip("uvloop")
    release = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve_once_then_hang() -> None:
        raw, _ = listener.accept()
        with tls_server_context(authority).wrap_socket(raw, server_side=True) as conn:
            conn.recv(65536)  # the request (small: one read)
            conn.sendall(answer(b"{}"))
            release.wait(10)  # reads nothing more: the client's close_notify goes unanswered

    async def scenario() -> None:
        transport = Http11Transport()
        assert (await transport.send(post(f"https://127.0.0.1:{port}/v1"))).status == 200
        assert _client_sockets_to(port) == 1
        await transport.aclose()
        assert _client_sockets_to(port) == 0  # was 1: the close still waiting on its peer

    thread = threading.Thread(target=serve_once_then_hang, daemon=True)
    thread.start()
    with authority.cert_pem.tempfile() as ca_file:
        monkeypatch.setenv("SSL_CERT_FILE", ca_file)
        loop = uvloop.new_event_loop()
        try:
            loop.run_until_complete(scenario())
        finally:
            try:
                loop.close()  # raised OSError (EBUSY) while the client's TLS close was pending
            finally:
                release.set()
                thread.join(5)
                listener.close()


def _client_sockets_to(port: int) -> int:
    """This machine's established TCP connections to 127.0.0.1:`port`, from the client side."""
    try:
        table = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except FileNotFoundError:
        pytest.skip("needs /proc/net/tcp (Linux)")
    established = "01"
    return sum(
        1
        for row in table
        if row.split()[2].endswith(f":{port:04X}") and row.split()[3] == established
    )


async def test_tls_to_an_untrusted_server_is_refused(authority: trustme.CA) -> None:
    transport = Http11Transport()
    async with server(echo_forever, tls=tls_server_context(authority)) as (url, seen):
        with pytest.raises(APIConnectionError, match=r"TLS handshake with 127\.0\.0\.1:"):
            await transport.send(post(url + "/v1"))
    await transport.aclose()
    assert seen.heads == []


async def test_at_the_limit_an_idle_connection_to_another_origin_makes_room() -> None:
    transport = Http11Transport(max_connections=1)
    async with server(echo_forever) as (first, seen_first), server(echo_forever) as (second, _):
        for _ in range(3):
            for url in (first, second):
                response = await asyncio.wait_for(transport.send(post(url)), 2)
                assert response.status == 200
        await transport.aclose()
    assert seen_first.connections == 3  # closed each time the other origin needed the room


# -- found in review: each failed before its fix ----------------------------------------------


async def test_requests_cancelled_at_random_leave_the_limit_holding_and_no_socket_open() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen) -> None:
        while await read_request(reader, seen) is not None:
            await asyncio.sleep(0.004)
            writer.write(answer(b"{}"))

    chance = random.Random(7)
    transport = Http11Transport(max_connections=4)

    async def maybe_cancelled() -> None:
        # Some cancelled while connecting, some while waiting for room, some mid-answer.
        with contextlib.suppress(TimeoutError, APIConnectionError):
            async with asyncio.timeout(chance.uniform(0.0, 0.012)):
                await transport.send(post(url))

    async with server(serve) as (url, seen):
        for _ in range(5):
            await asyncio.gather(*(maybe_cancelled() for _ in range(30)))
        pool = transport._pool
        assert pool._open == len(pool._live) <= 4  # each counted out once, however it ended
        # The server notices an aborted connection a moment after the client counted it out.
        await asyncio.sleep(0.2)
        seen.most_open = seen.open_now
        responses = await asyncio.gather(*(transport.send(post(url)) for _ in range(40)))
        assert [r.status for r in responses] == [200] * 40
        assert seen.most_open <= 4  # the count survived the cancellations: the limit holds
        await transport.aclose()
        for _ in range(200):
            if seen.open_now == 0:
                break
            await asyncio.sleep(0.01)
        assert seen.open_now == 0  # every socket it opened is closed


async def test_a_waiter_woken_then_cancelled_passes_its_turn_on() -> None:
    release = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen) -> None:
        while await read_request(reader, seen) is not None:
            if len(seen.heads) == 1:
                await release.wait()
            writer.write(answer(b"{}"))

    transport = Http11Transport(max_connections=1, timeouts=Timeouts(read=5.0))
    async with server(serve) as (url, _):
        first = asyncio.create_task(transport.send(post(url)))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(transport.send(post(url)))
        third = asyncio.create_task(transport.send(post(url)))
        await asyncio.sleep(0.05)
        give_back = transport._pool.give_back

        def give_back_then_cancel_the_woken(connection: object) -> None:
            give_back(connection)  # type: ignore[arg-type]
            second.cancel()  # woken by that, cancelled before it runs

        transport._pool.give_back = give_back_then_cancel_the_woken  # type: ignore[method-assign]
        release.set()
        await first
        response = await asyncio.wait_for(third, 1.0)  # not its 5 s deadline
    await transport.aclose()
    assert response.status == 200 and second.cancelled()


async def test_a_stream_left_with_reading_paused_leaves_a_connection_that_reads() -> None:
    big = b"x" * (STREAM_BUFFER + 100)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen) -> None:
        while await read_request(reader, seen) is not None:
            writer.write(answer(big if len(seen.heads) == 1 else b"small"))

    transport = Http11Transport(timeouts=Timeouts(read=2.0))
    async with server(serve) as (url, seen):
        async with transport.stream(post(url)) as streamed:
            connection = streamed._connection
            for _ in range(300):  # the whole body arrives, unread: reading pauses
                if connection._answer is not None and connection._answer.complete:
                    break
                await asyncio.sleep(0.01)
            assert connection._paused  # the case under test: complete, and paused
        response = await asyncio.wait_for(transport.send(post(url)), 1.0)
    await transport.aclose()
    assert response.body == b"small"
    assert seen.connections == 1  # the same connection, reading again
    assert streamed.status == 200


@pytest.mark.parametrize("damage", ["corrupt", "truncated"])
async def test_a_damaged_compressed_body_fails_rather_than_ending_short(damage: str) -> None:
    body = gzip.compress(b"".join(b'data: {"n": %d}\n\n' % n for n in range(2000)))
    if damage == "corrupt":
        damaged = body[:200] + bytes(byte ^ 0xFF for byte in body[200:600]) + body[600:]
    else:
        damaged = body[: len(body) // 2]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen) -> None:
        while await read_request(reader, seen) is not None:
            writer.write(answer(damaged, b"content-encoding: gzip"))

    transport = Http11Transport()
    async with server(serve) as (url, _):
        with pytest.raises(APIConnectionError, match="compressed answer is corrupt"):
            await transport.send(post(url))
        with pytest.raises(APIConnectionError, match="compressed answer is corrupt"):
            async with transport.stream(post(url)) as streamed:
                async for _ in streamed.iter_bytes():
                    pass
    await transport.aclose()


async def test_aclose_with_a_request_in_flight_sends_nothing_again() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen) -> None:
        await read_request(reader, seen)
        await asyncio.sleep(5)

    transport = Http11Transport()
    async with server(serve) as (url, seen):
        in_flight = asyncio.create_task(transport.send(post(url)))
        for _ in range(200):  # until the server has the request
            if seen.heads:
                break
            await asyncio.sleep(0.01)
        await transport.aclose()
        with pytest.raises(APIConnectionError):
            await asyncio.wait_for(in_flight, 2)
        await asyncio.sleep(0.1)
    assert len(seen.heads) == 1 and seen.connections == 1


async def test_a_reset_in_an_answer_without_a_length_is_an_error_not_its_end() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen) -> None:
        await read_request(reader, seen)
        writer.write(b'HTTP/1.1 200 OK\r\nconnection: close\r\n\r\ndata: {"partial"')
        await writer.drain()
        await asyncio.sleep(0.1)
        raw = writer.get_extra_info("socket")
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # a reset, not the orderly close that ends such an answer

    transport = Http11Transport()
    async with server(serve) as (url, _):
        with pytest.raises(APIConnectionError, match="middle of the response body"):
            await transport.send(post(url))
    await transport.aclose()


async def test_a_path_with_spaces_or_accents_is_percent_encoded() -> None:
    transport = Http11Transport()
    async with server(echo_forever) as (url, seen):
        await transport.send(post(url + "/deployments/my model/modèle?q=a b&key=x%2Fy"))
    await transport.aclose()
    request_line = seen.heads[0].split(b"\r\n")[0]
    assert request_line == b"POST /deployments/my%20model/mod%C3%A8le?q=a%20b&key=x%2Fy HTTP/1.1"
