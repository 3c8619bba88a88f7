"""Both transports through a real HTTP proxy (proxy.py, a child process on 127.0.0.1): http://
URLs forwarded whole, https:// URLs tunnelled with CONNECT and TLS to the origin, credentials
from the proxy URL, a 407, NO_PROXY, and a name that does not resolve while a proxy variable is
set. The proxies come from an explicit environment (`Proxies.from_env({...})`), never the
machine's, whose NO_PROXY may name 127.0.0.1. Each test runs on asyncio's loop and uvloop's."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import ssl
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import trustme

from llmgather import APIConnectionError, PermanentError
from llmgather.transport import (
    AiohttpTransport,
    Http11Transport,
    HttpRequest,
    Proxies,
    Transport,
)
from tests.transport.proxyprocess import ProxyProcess, proxy_process

PASSWORD = "p@ss w"  # in the proxy URL as p%40ss%20w
WRONG = "wrong!Secret-7e1"


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    with proxy_process(tmp_path_factory.mktemp("proxy")) as running:
        yield running


@pytest.fixture(scope="module")
def guarded_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    """A proxy that answers 407 unless given user:p@ss w."""
    with proxy_process(tmp_path_factory.mktemp("guarded"), basic_auth=f"user:{PASSWORD}") as p:
        yield p


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def tls_proxy(
    tmp_path_factory: pytest.TempPathFactory, authority: trustme.CA
) -> Iterator[ProxyProcess]:
    """An https:// proxy: TLS to the proxy itself, its certificate from `authority`."""
    folder = tmp_path_factory.mktemp("tls-proxy")
    issued = authority.issue_cert("127.0.0.1")
    cert, key = folder / "cert.pem", folder / "key.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    with proxy_process(folder / "run", tls=(cert, key)) as running:
        yield running


@pytest.fixture
def trusted(authority: trustme.CA, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with authority.cert_pem.tempfile() as ca_file:
        monkeypatch.setenv("SSL_CERT_FILE", ca_file)  # how a user points at a private CA
        yield


def transport(kind: str, env: dict[str, str]) -> Transport:
    proxies = Proxies.from_env(env)
    if kind == "aiohttp":
        return AiohttpTransport(proxies=proxies)
    return Http11Transport(proxies=proxies)


class Origin:
    """What the origin server saw: request heads, connections, and the TLS names asked for."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        self.connections = 0
        self.server_names: list[str | None] = []


@contextlib.asynccontextmanager
async def origin(
    host: str = "127.0.0.1", *, tls: ssl.SSLContext | None = None, status: bytes = b"200 OK"
) -> AsyncIterator[tuple[str, Origin]]:
    """An HTTP/1.1 server answering each request with `{"path": …}`, kept alive."""
    seen = Origin()
    handlers: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
    if tls is not None:
        tls.sni_callback = lambda sock, name, context: seen.server_names.append(name)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers[asyncio.current_task()] = writer  # type: ignore[index]
        seen.connections += 1
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                seen.heads.append(head)
                length = next(
                    (int(line.split(b":")[1]) for line in head.split(b"\r\n")
                     if line.lower().startswith(b"content-length:")), 0,
                )  # fmt: skip
                await reader.readexactly(length)
                path = head.split(b" ")[1]
                body = b'{"path": "%s"}' % path
                writer.write(
                    b"HTTP/1.1 %s\r\ncontent-length: %d\r\n\r\n%s" % (status, len(body), body)
                )
                await writer.drain()
        writer.close()

    listening = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)
    port = listening.sockets[0].getsockname()[1]
    try:
        yield f"{'https' if tls else 'http'}://{host}:{port}", seen
    finally:
        # The proxy may keep its connection to this server open: end each handler by closing
        # its connection, rather than leave it to be cancelled with the loop.
        for writer in handlers.values():
            writer.transport.abort()
        if handlers:
            await asyncio.wait(handlers, timeout=5)
        listening.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(listening.wait_closed(), 2)


def post(url: str) -> HttpRequest:
    return HttpRequest("POST", url, {"authorization": "Bearer sk-test"}, b'{"n": 1}')


def tls_for(authority: trustme.CA, name: str = "127.0.0.1") -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert(name).configure_cert(context)
    return context


def authority_of(url: str) -> str:
    return url.split("://", 1)[1]


# -- through the proxy ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["http11", "aiohttp"])
async def test_an_http_url_goes_to_the_proxy_which_forwards_it(
    kind: str, proxy: ProxyProcess
) -> None:
    async with origin() as (url, seen):
        sender = transport(kind, {"HTTP_PROXY": proxy.url()})
        for _ in range(3):
            response = await sender.send(post(url + "/v1/chat/completions?x=1"))
            assert response.status == 200
            assert response.body == b'{"path": "/v1/chat/completions?x=1"}'
        await sender.aclose()
    # The proxy took the whole URL and sent the origin its path: a forwarded request.
    assert proxy.wait_for(f"POST {authority_of(url)}/v1/chat/completions")
    assert all(b"authorization: bearer sk-test" in head.lower() for head in seen.heads)


async def test_an_https_url_is_tunnelled_and_tls_is_with_the_origin_by_its_name(
    proxy: ProxyProcess, authority: trustme.CA, trusted: None
) -> None:
    # The origin is named `localhost` (the proxy is 127.0.0.1): the TLS name asked for (SNI)
    # and checked against the certificate is the origin's, not the proxy's.
    async with origin("localhost", tls=tls_for(authority, "localhost")) as (url, seen):
        sender = transport("http11", {"HTTPS_PROXY": proxy.url()})
        for _ in range(3):
            response = await sender.send(post(url + "/v1/chat/completions"))
            assert response.body == b'{"path": "/v1/chat/completions"}'
        await sender.aclose()
    assert seen.connections == 1  # one tunnel, kept alive
    assert seen.server_names == ["localhost"]
    assert len(proxy.wait_for(f"CONNECT {authority_of(url)}")) == 1


async def test_the_aiohttp_transport_tunnels_an_https_url_too(
    proxy: ProxyProcess, authority: trustme.CA
) -> None:
    # aiohttp keeps the CAs it read at import, so this origin's authority is not among them:
    # the handshake through the tunnel fails on the origin's certificate, as it should.
    async with origin(tls=tls_for(authority)) as (url, _):
        sender = transport("aiohttp", {"HTTPS_PROXY": proxy.url()})
        with pytest.raises(APIConnectionError) as failure:
            await sender.send(post(url + "/v1"))
        await sender.aclose()
    message = str(failure.value)
    assert f"the TLS handshake with {authority_of(url)} through the proxy 127.0.0.1:" in message
    assert "(from HTTPS_PROXY)" in message
    assert proxy.wait_for(f"CONNECT {authority_of(url)}")


@pytest.mark.parametrize("proxy_scheme", ["http", "https"])
async def test_the_aiohttp_transport_completes_the_handshake_through_the_tunnel(
    proxy_scheme: str,
    proxy: ProxyProcess,
    tls_proxy: ProxyProcess,
    authority: trustme.CA,
    tmp_path: Path,
) -> None:
    through = tls_proxy if proxy_scheme == "https" else proxy
    # In a process that trusts the authority from its start (SSL_CERT_FILE, read by aiohttp at
    # import), the same tunnel carries the request.
    script = (
        "import asyncio, sys\n"
        "from llmgather.transport import AiohttpTransport, HttpRequest, Proxies\n"
        "async def main():\n"
        "    proxies = Proxies.from_env({'HTTPS_PROXY': sys.argv[1]})\n"
        "    sender = AiohttpTransport(proxies=proxies)\n"
        "    answer = await sender.send(HttpRequest('POST', sys.argv[2], {}, b'{}'))\n"
        "    await sender.aclose()\n"
        "    print(answer.status, answer.body.decode())\n"
        "asyncio.run(main())\n"
    )
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    async with origin(tls=tls_for(authority)) as (url, seen):
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, through.url(), url + "/v1/messages",
            env={**os.environ, "SSL_CERT_FILE": str(ca_file)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(child.communicate(), 30)
    assert child.returncode == 0, err.decode()
    assert out.decode().strip() == '200 {"path": "/v1/messages"}'
    assert seen.connections == 1
    assert through.wait_for(f"CONNECT {authority_of(url)}")


async def test_an_https_proxy_is_reached_with_tls_and_tunnels_tls_inside_it(
    tls_proxy: ProxyProcess, authority: trustme.CA, trusted: None
) -> None:
    env = {"HTTP_PROXY": tls_proxy.url(), "HTTPS_PROXY": tls_proxy.url()}
    async with origin() as (plain, _), origin(tls=tls_for(authority)) as (secure, seen):
        sender = transport("http11", env)
        for url in (plain, secure, secure):
            response = await sender.send(post(url + "/v1/x"))
            assert response.body == b'{"path": "/v1/x"}'
        await sender.aclose()
    assert seen.connections == 1
    assert tls_proxy.wait_for(f"POST {authority_of(plain)}/v1/x")
    assert tls_proxy.wait_for(f"CONNECT {authority_of(secure)}")


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_an_https_proxy_whose_certificate_is_not_trusted_is_named(
    scheme: str, tls_proxy: ProxyProcess, authority: trustme.CA
) -> None:
    variable = f"{scheme.upper()}_PROXY"
    async with origin(tls=tls_for(authority) if scheme == "https" else None) as (url, seen):
        sender = transport("http11", {variable: tls_proxy.url()})
        with pytest.raises(APIConnectionError) as failure:
            await sender.send(post(url + "/v1"))
        await sender.aclose()
    message = str(failure.value)
    assert f"the TLS handshake with the proxy 127.0.0.1:{tls_proxy.port} (from {variable})" in (
        message
    )
    assert "certificate" in message
    assert seen.heads == []


@pytest.mark.parametrize("kind", ["http11", "aiohttp"])
async def test_a_stream_goes_through_the_proxy_too(
    kind: str, proxy: ProxyProcess, authority: trustme.CA, trusted: None
) -> None:
    env = {"HTTP_PROXY": proxy.url(), "HTTPS_PROXY": proxy.url()}
    async with origin() as (plain, _), origin(tls=tls_for(authority)) as (secure, _):
        sender = transport(kind, env)
        urls = [plain] if kind == "aiohttp" else [plain, secure]  # aiohttp: see above
        for url in urls:
            async with sender.stream(post(url + "/v1/stream")) as answer:
                assert answer.status == 200
                assert await answer.read() == b'{"path": "/v1/stream"}'
        await sender.aclose()
    assert proxy.wait_for(f"POST {authority_of(plain)}/v1/stream")


async def test_a_407_from_the_origin_inside_a_tunnel_is_its_answer_not_the_proxys(
    proxy: ProxyProcess, authority: trustme.CA, trusted: None
) -> None:
    # Through an https:// tunnel the proxy has spoken at CONNECT: a 407 after it is the
    # origin's own answer (its own proxy-style auth), not a refusal by the proxy.
    env = {"HTTPS_PROXY": proxy.url()}
    tls = tls_for(authority)
    async with origin(tls=tls, status=b"407 Proxy Authentication Required") as (secure, _):
        sender = transport("http11", env)
        answer = await sender.send(post(secure + "/v1/a"))
        await sender.aclose()
    assert answer.status == 407


# -- credentials ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["http11", "aiohttp"])
async def test_credentials_in_the_proxy_url_are_sent_percent_decoded(
    kind: str, guarded_proxy: ProxyProcess, authority: trustme.CA, trusted: None
) -> None:
    proxy_url = guarded_proxy.url("user:p%40ss%20w")
    env = {"http_proxy": proxy_url, "https_proxy": proxy_url}
    async with origin() as (plain, _), origin(tls=tls_for(authority)) as (secure, _):
        sender = transport(kind, env)
        assert (await sender.send(post(plain + "/v1/a"))).status == 200
        if kind == "http11":
            assert (await sender.send(post(secure + "/v1/b"))).status == 200
        else:  # aiohttp does not trust this CA (see above), but the proxy let the tunnel open
            with pytest.raises(APIConnectionError, match="TLS handshake"):
                await sender.send(post(secure + "/v1/b"))
        await sender.aclose()
    assert guarded_proxy.wait_for(f"POST {authority_of(plain)}/v1/a - 200")
    assert guarded_proxy.wait_for(f"CONNECT {authority_of(secure)}")


@pytest.mark.parametrize("streaming", [False, True], ids=["send", "stream"])
@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("kind", ["http11", "aiohttp"])
async def test_a_proxy_refusing_the_credentials_is_a_permanent_error_that_hides_them(
    kind: str, scheme: str, streaming: bool, guarded_proxy: ProxyProcess, authority: trustme.CA
) -> None:
    variable = f"{scheme.upper()}_PROXY"
    env = {variable: guarded_proxy.url(f"user:{WRONG.replace('!', '%21')}")}
    tls = tls_for(authority) if scheme == "https" else None
    async with origin(tls=tls) as (url, seen):
        sender = transport(kind, env)
        with pytest.raises(PermanentError) as failure:
            if streaming:
                async with sender.stream(post(url + "/v1")):
                    pass
            else:
                await sender.send(post(url + "/v1"))
        # The refused connection is not kept: the next request asks the proxy again.
        with pytest.raises(PermanentError):
            await sender.send(post(url + "/v1"))
        await sender.aclose()
    error = failure.value
    assert not error.retryable
    assert error.status_code == 407
    message = str(error)
    assert f"the proxy 127.0.0.1:{guarded_proxy.port} (from {variable})" in message
    assert "credentials" in message
    token = base64.b64encode(f"user:{WRONG}".encode()).decode()
    for secret in (WRONG, "Secret-7e1", "%21Secret", token):
        assert secret not in message
        assert secret not in repr(error)
    assert seen.heads == []  # nothing reached the origin


# -- not through the proxy ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["http11", "aiohttp"])
async def test_without_no_proxy_a_proxy_that_is_down_is_named(
    kind: str, closed_port: Callable[[], int]
) -> None:
    dead = closed_port()
    async with origin() as (url, seen):
        sender = transport(kind, {"HTTP_PROXY": f"http://user:{WRONG}@127.0.0.1:{dead}"})
        with pytest.raises(APIConnectionError) as failure:
            await sender.send(post(url + "/v1"))
        await sender.aclose()
    message = str(failure.value)
    assert f"cannot connect to the proxy 127.0.0.1:{dead} (from HTTP_PROXY)" in message
    assert WRONG not in message
    assert seen.heads == []


@pytest.mark.parametrize("kind", ["http11", "aiohttp"])
@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "127.0.0.0/8", "*", "example.com, 127.0.0.1"])
async def test_no_proxy_sends_those_hosts_directly(
    kind: str, no_proxy: str, closed_port: Callable[[], int]
) -> None:
    env = {"HTTP_PROXY": f"http://127.0.0.1:{closed_port()}", "NO_PROXY": no_proxy}
    async with origin() as (url, seen):
        sender = transport(kind, env)
        assert (await sender.send(post(url + "/v1"))).status == 200
        await sender.aclose()
    assert seen.heads[0].startswith(b"POST /v1 HTTP/1.1")


@pytest.mark.parametrize("kind", ["http11", "aiohttp"])
async def test_no_proxy_with_a_port_covers_that_port_only(
    kind: str, closed_port: Callable[[], int]
) -> None:
    dead = closed_port()
    async with origin() as (url, _), origin() as (other, _):
        port = url.rsplit(":", 1)[1]
        sender = transport(
            kind, {"HTTP_PROXY": f"http://127.0.0.1:{dead}", "no_proxy": f"127.0.0.1:{port}"}
        )
        assert (await sender.send(post(url + "/v1"))).status == 200
        with pytest.raises(APIConnectionError, match=f"the proxy 127.0.0.1:{dead}"):
            await sender.send(post(other + "/v1"))
        await sender.aclose()


@pytest.mark.parametrize("kind", ["http11", "aiohttp"])
async def test_a_name_that_does_not_resolve_says_the_proxy_variable_was_not_used(
    kind: str,
    closed_port: Callable[[], int],
) -> None:
    env = {"HTTPS_PROXY": f"http://127.0.0.1:{closed_port()}", "NO_PROXY": ".invalid"}
    sender = transport(kind, env)
    with pytest.raises(APIConnectionError) as failure:
        await sender.send(post("https://api.llmgather-test.invalid/v1/chat/completions"))
    await sender.aclose()
    message = str(failure.value)
    assert "cannot resolve api.llmgather-test.invalid" in message
    assert "HTTPS_PROXY is set, but NO_PROXY covers api.llmgather-test.invalid" in message


@pytest.mark.parametrize("kind", ["http11", "aiohttp"])
async def test_a_proxy_for_the_other_scheme_only_is_named_when_a_name_does_not_resolve(
    kind: str,
    closed_port: Callable[[], int],
) -> None:
    sender = transport(kind, {"HTTP_PROXY": f"http://127.0.0.1:{closed_port()}"})
    with pytest.raises(APIConnectionError, match="HTTP_PROXY is set, but it is for http:// URLs"):
        await sender.send(post("https://api.llmgather-test.invalid/v1"))
    await sender.aclose()


def test_proxy_settings_never_show_the_password_in_their_repr(tmp_path: Path) -> None:
    proxies = Proxies.from_env({"HTTPS_PROXY": f"http://user:{WRONG}@proxy.example:3128"})
    assert proxies.https is not None
    assert WRONG not in repr(proxies)
    assert WRONG not in str(proxies.https)
    assert str(proxies.https) == "the proxy proxy.example:3128 (from HTTPS_PROXY)"
