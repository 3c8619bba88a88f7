"""What a request is on the wire: where a URL says to connect, and the request's bytes."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import quote, urlsplit

from llmgather._errors import ConfigurationError

if TYPE_CHECKING:
    from llmgather.transport.base import HttpRequest
    from llmgather.transport.proxies import Proxies, Proxy


class Origin(NamedTuple):
    """Where a connection leads, and the proxy it goes through (the pool's key: connections
    through a proxy and direct ones are never mixed)."""

    scheme: str
    host: str
    port: int
    via: Proxy | None = None


class Target(NamedTuple):
    """What a URL means for the wire: where to connect and the request line's target."""

    origin: Origin
    path: str  # path and query (the whole URL, to a proxy), as sent on the request line
    host_header: str
    proxy_header: str = ""  # the Proxy-Authorization line a forwarding proxy is sent


# What may stay as it is in a request line's path and query; anything else (a space, a
# non-ASCII letter in a deployment name) is percent-encoded, an existing %XX kept, as aiohttp does.
_URL_SAFE = "/%:@!$&'()*+,;=-._~?"


def parse_url(url: str, proxies: Proxies | None = None) -> Target:
    """Where to send a request for `url`: direct, or through the proxy `proxies` name for it.

    An http:// URL goes to its proxy as the whole URL on the request line (absolute-form), as
    curl, requests and httpx send it: many proxies allow CONNECT to port 443 only. An https://
    URL's connection is a CONNECT tunnel (`tunnel.py`); its requests are as a direct one's."""
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed IPv6 bracket, say
        raise ConfigurationError("the URL is malformed: fix the base URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        # Never quote the URL: a Gemini key may ride in its query.
        raise ConfigurationError(
            f"cannot send to a {scheme or 'scheme-less'} URL: give the base URL as "
            "http://host[:port]/… or https://host[:port]/…"
        )
    default_port = 443 if scheme == "https" else 80
    try:
        port = parts.port or default_port
    except ValueError:
        raise ConfigurationError(
            "the URL's port is not a number from 0 to 65535: fix the base URL"
        ) from None
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host  # an IPv6 literal keeps its brackets
    host_header = shown if port == default_port else f"{shown}:{port}"
    path = quote(parts.path or "/", safe=_URL_SAFE)
    if parts.query:
        path += "?" + quote(parts.query, safe=_URL_SAFE)
    via = proxies.for_origin(scheme, host, port) if proxies is not None else None
    if via is not None and scheme == "http":
        authorization = via.authorization
        line = f"proxy-authorization: {authorization}\r\n" if authorization else ""
        return Target(
            Origin(scheme, host, port, via), f"http://{host_header}{path}", host_header, line
        )
    return Target(Origin(scheme, host, port, via), path, host_header)


def request_bytes(request: HttpRequest, target: Target) -> list[bytes]:
    """The request's bytes: a head (request line and headers) and its body."""
    lines = [f"{request.method} {target.path} HTTP/1.1\r\n"]
    given = set()
    for name, value in request.headers.items():
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
            # Name the header, never its value: it may be the API key (read from a file with
            # its trailing newline, most often).
            raise ConfigurationError(
                f"the request header {name.strip()!r} holds a line break: remove it (an API "
                "key read from a file keeps its trailing newline unless stripped)"
            )
        lines.append(f"{name}: {value}\r\n")
        given.add(name.lower())
    if "host" not in given:
        lines.append(f"host: {target.host_header}\r\n")
    if request.body or request.method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
        if "content-length" not in given:
            # In its usual case: a proxy that matches header names by their case (proxy.py
            # does) would otherwise add a second one, which the server rightly refuses.
            lines.append(f"Content-Length: {len(request.body)}\r\n")
    if "accept-encoding" not in given:
        lines.append("accept-encoding: gzip, deflate\r\n")
    if "user-agent" not in given:
        lines.append(USER_AGENT)
    if target.proxy_header:
        lines.append(target.proxy_header)
    lines.append("\r\n")
    return [("".join(lines)).encode("utf-8"), request.body]


def _user_agent() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"user-agent: llmgather/{version('llmgather')}\r\n"
    except PackageNotFoundError:  # run from a source tree
        return "user-agent: llmgather\r\n"


USER_AGENT = _user_agent()
