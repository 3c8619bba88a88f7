"""Which proxy a request goes through: the proxy variables, read once at the edge (the Client,
the CLI) into a `Proxies` that both transports consult per URL.

The variables mean what they mean to curl, requests and httpx, so to the official SDKs:

    https_proxy / HTTPS_PROXY    the proxy for https:// URLs
    http_proxy  / HTTP_PROXY     the proxy for http:// URLs
    all_proxy   / ALL_PROXY      either, where its own variable is unset
    no_proxy    / NO_PROXY       hosts sent direct, comma-separated: `*` (every host); a name,
                                 which covers its subdomains too (`example.com`, `.example.com`
                                 and `*.example.com` alike); an IP address or a network
                                 (`10.0.0.0/8`); any of them as `HOST:PORT` for that port only

The lowercase name wins over the uppercase one, as in curl; an empty value is unset. A proxy is
an http:// URL (a bare `host:port` is taken as one) or an https:// one (TLS to the proxy
itself, as httpx and requests take it), its credentials, percent-encoded, in the URL: they
become a `Proxy-Authorization: Basic` header and appear in no message.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import unquote, urlsplit

from llmgather._errors import APIError, ConfigurationError, ConnectError, PermanentError
from llmgather._redact import basic_credentials

# Every variable `Proxies.from_env` may read a proxy URL from (a URL may carry its own login).
PROXY_VARIABLES = tuple(
    name
    for scheme in ("https", "http", "all")
    for name in (f"{scheme.upper()}_PROXY", f"{scheme}_proxy")
)


@dataclass(frozen=True, slots=True)
class Proxy:
    """An HTTP proxy: where it listens, the variable that named it, and its credentials."""

    host: str
    port: int
    source: str  # the variable it came from, named in every message about it
    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)
    scheme: str = "http"  # https: the connection to the proxy itself is TLS

    @property
    def address(self) -> str:
        """`host:port`, never the credentials."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The proxy's URL without its credentials."""
        return f"{self.scheme}://{self.address}"

    @property
    def authorization(self) -> str | None:
        """The `Proxy-Authorization` header's value, if the URL carried credentials."""
        if not self.username and not self.password:
            return None
        return basic_credentials(self.username, self.password)

    def __str__(self) -> str:
        return f"the proxy {self.address} (from {self.source})"


_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class _Exemption:
    """One NO_PROXY entry: every host, a network, or a name and its subdomains."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    name: str = ""
    port: int | None = None  # None: any port
    everything: bool = False

    def covers(self, host: str, ip: _Address | None, port: int) -> bool:
        if self.everything:
            return True
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            return ip is not None and ip.version == self.network.version and ip in self.network
        return host == self.name or host.endswith("." + self.name)


@dataclass(frozen=True, slots=True)
class Proxies:
    """Which proxy each URL goes through, from the environment (`Proxies.from_env`).

    `ignored` names proxy variables that are set but turned off (`trust_env=False`), so that an
    error reaching a host directly can say so.
    """

    http: Proxy | None = None
    https: Proxy | None = None
    exemptions: tuple[_Exemption, ...] = ()
    no_proxy_source: str = "NO_PROXY"
    ignored: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, trust_env: bool = True) -> Proxies:
        """The proxies the variables in `env` name; none when `trust_env` is False.

        Raises ConfigurationError for a proxy URL llmgather cannot use, naming the variable.
        """
        names = {scheme: _variable(env, f"{scheme}_proxy") for scheme in ("http", "https", "all")}
        if not trust_env:
            return cls(ignored=tuple(name for name, _ in names.values() if name))
        every = names["all"]
        http_name, http_value = names["http"] if names["http"][0] else every
        https_name, https_value = names["https"] if names["https"][0] else every
        no_proxy_name, no_proxy = _variable(env, "no_proxy")
        return cls(
            http=_proxy(http_value, http_name) if http_name else None,
            https=_proxy(https_value, https_name) if https_name else None,
            exemptions=_exemptions(no_proxy),
            no_proxy_source=no_proxy_name or "NO_PROXY",
        )

    def for_origin(self, scheme: str, host: str, port: int) -> Proxy | None:
        """The proxy for a URL's scheme, host and port; None to connect directly."""
        proxy = self.https if scheme == "https" else self.http
        if proxy is None or self._exempt(host, port):
            return None
        return proxy

    def unused_hint(self, scheme: str, host: str, port: int) -> str:
        """Why a proxy variable that is set did not carry a direct request to `host`, as a
        clause to append to an error ("" when none is set)."""
        if self.ignored:
            names = " and ".join(self.ignored)
            verb = "is" if len(self.ignored) == 1 else "are"
            return f"; {names} {verb} set but not used (trust_env=False)"
        wanted = self.https if scheme == "https" else self.http
        if wanted is not None:
            return (
                f"; {wanted.source} is set, but {self.no_proxy_source} covers {host}, so it was "
                "not used"
            )
        other = self.http if scheme == "https" else self.https
        if other is not None:
            variable = "HTTPS_PROXY" if scheme == "https" else "HTTP_PROXY"
            return (
                f"; {other.source} is set, but it is for {'http' if scheme == 'https' else 'https'}"
                f":// URLs only: set {variable} to reach {scheme}:// URLs through a proxy"
            )
        return ""

    def _exempt(self, host: str, port: int) -> bool:
        if not self.exemptions:
            return False
        host = host.lower().rstrip(".")
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        return any(exemption.covers(host, ip, port) for exemption in self.exemptions)


def refused(proxy: Proxy, status: int, target: str) -> APIError:
    """A proxy's non-2xx answer to `CONNECT target` (or a 407 to a forwarded request)."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "an unknown status"
    if status == 407:
        return PermanentError(
            f"{proxy} did not accept the credentials it was given, or was given none "
            f"({phrase}): give the user name and password in the URL in {proxy.source}, "
            "before the host, percent-encoded",
            status_code=status,
        )
    if status >= 500 or status in (408, 429):
        # The proxy could not reach the host, or is busy: nothing reached it, so as a failed
        # connect, retried.
        return ConnectError(f"{proxy} could not connect to {target} ({status} {phrase})")
    return PermanentError(
        f"{proxy} refused to connect to {target} ({phrase}): its administrator "
        f"decides where it goes; a host reachable directly can be named in NO_PROXY",
        status_code=status,
    )


def _variable(env: Mapping[str, str], lower: str) -> tuple[str, str]:
    """The variable that sets `lower` (its lowercase name first, as curl reads it) and its
    value; ("", "") when neither is set to anything."""
    for name in (lower, lower.upper()):
        value = env.get(name, "").strip()
        if value:
            return name, value
    return "", ""


def _proxy(value: str, source: str) -> Proxy:
    text = value if "://" in value else f"http://{value}"
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018  (raises for a port that is not a number from 0 to 65535)
    except ValueError:
        # Never quote the value: it may hold the proxy's password.
        raise ConfigurationError(
            f"{source} is not a valid proxy URL: give it as http://[USER:PASSWORD@]HOST:PORT"
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ConfigurationError(
            f"{source} names a {scheme}:// proxy, and llmgather goes through HTTP proxies only "
            f"(http:// or https:// URLs): give an HTTP proxy's URL in {source}, or unset it "
            "(in the library, Client(trust_env=False) ignores the proxy variables)"
        )
    if not parts.hostname:
        raise ConfigurationError(
            f"{source} names no proxy host: give it as http://[USER:PASSWORD@]HOST:PORT"
        )
    return Proxy(
        parts.hostname,
        parts.port or (443 if scheme == "https" else 80),
        source,
        username=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        scheme=scheme,
    )


def _exemptions(no_proxy: str) -> tuple[_Exemption, ...]:
    exemptions = []
    for entry in no_proxy.replace(" ", ",").split(","):
        exemption = _exemption(entry.strip().lower())
        if exemption is not None:
            exemptions.append(exemption)
    return tuple(exemptions)


def _exemption(entry: str) -> _Exemption | None:
    if not entry:
        return None
    if entry == "*":
        return _Exemption(everything=True)
    host, port = entry, None
    if entry.startswith("["):  # [v6] or [v6]:port
        host, _, rest = entry[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
    elif entry.count(":") == 1:  # host:port (a bare IPv6 address has several colons)
        name, _, number = entry.partition(":")
        if number.isdigit():
            host, port = name, int(number)
    try:
        return _Exemption(network=ipaddress.ip_network(host, strict=False), port=port)
    except ValueError:
        pass
    name = host.removeprefix("*").removeprefix(".").rstrip(".")
    return _Exemption(name=name, port=port) if name else None
