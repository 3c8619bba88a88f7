"""Hide every secret from text that leaves the process: the values it knows, and the shapes of
keys and tokens it does not.

This is the one place that decides what a secret looks like. Every boundary that prints, logs,
stores or answers text that a server or an exception may have filled passes it through a
`Redactor`:

    error messages mapped from a provider's answer   providers/* (the adapter's own Redactor)
    errors mapped from the official SDKs' exceptions _sdk_errors.py (shapes)
    every failed Result and the exception raised     _engine.py (its owner's Redactor:
        → output lines, --json top_errors, job          `registry.secrets_redactor`)
          store rows, Result.error, logs
    bodies and text the service relays or answers    service/gateway.py, routes/generate.py
    the results of the service's jobs                service/errors.py `for_clients`
    the values and text `run_job` stores             jobs/calls.py
    URLs shown in messages                           redact_url

Two kinds of secret are hidden:

- Known values: API keys (given, or read from the provider variables in the environment),
  a base URL's user and password (as written and percent-decoded), the `Basic` credentials
  built from them, the values of its query, a service token. Values shorter than
  `MIN_SECRET_CHARS` are not hidden: replacing every "pw" would garble the message.
- Shapes, hidden even when the value is unknown: provider keys (`sk-…`, `sk-proj-…`,
  `sk-ant-…`, Google's `AIza…`), `Bearer <token>`, `Basic <base64 of user:password>`,
  credentials in URLs (`scheme://user:password@`), key query parameters (`key=`,
  `api_key=`, `token=` …) and key headers echoed as text (`x-api-key: …`).

Text is redacted before it is cut to size: cut first, a secret straddling the cut would
survive in part. A relayed body (bytes) is searched for the known values only, one `in` check
each, so the success path stays cheap; a stream is scrubbed line by line (`StreamScrubber`),
so a value split across two chunks is still found (a secret never holds a line break: keys
with one are refused before anything is sent).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from urllib.parse import quote, unquote

from llmgather._errors import APIError

REDACTED = "[redacted]"
_REDACTED_BYTES = REDACTED.encode()
MIN_SECRET_CHARS = 4

# Each alternative keeps its first group (a name, a scheme) and hides the rest of the match.
_SHAPES = re.compile(
    r"""
    (\b(?:x-api-key|x-goog-api-key|api-key|(?:proxy-)?authorization)["']?\s*[:=]\s*["']?
        (?:(?:bearer|basic|token)\s+)?)[^\s'",;&]+     # a key header, echoed as text
  | ([a-z][a-z0-9+.-]*://)[^/\s@'"<>]+(?=@)             # user:password@ in a URL
  | ((?<![a-z0-9_-])(?:api[_-]?key|apikey|key|token|access[_-]token|password|secret)=)
        [^&\s'"<>]+                                     # a credential in a query
  | (\bbearer\s+)[a-z0-9._~+/=-]{8,}                    # a bearer token (OpenAI's key)
  | ()(?<![a-z0-9_-])sk-[a-z0-9_-]{8,}                  # OpenAI's and Anthropic's keys
  | ()\baiza[a-z0-9_-]{30,}                             # Google's keys
    """,
    re.IGNORECASE | re.VERBOSE,
)
# `Basic <base64>` is hidden only when it decodes to user:password, so that the words after
# "basic" in a message ("basic authentication failed") stay.
_BASIC = re.compile(r"(\bbasic\s+)([a-z0-9+/]{4,}={0,2})", re.IGNORECASE)


def _kept(match: re.Match[str]) -> str:
    return next(group for group in match.groups() if group is not None) + REDACTED


def _basic(match: re.Match[str]) -> str:
    try:
        decoded = base64.b64decode(match.group(2), validate=True)
    except (binascii.Error, ValueError):
        return match.group(0)
    return match.group(1) + REDACTED if b":" in decoded else match.group(0)


def hide_shapes(text: str) -> str:
    """`text` with every key, token and credential of a known shape hidden."""
    return _BASIC.sub(_basic, _SHAPES.sub(_kept, text))


class Redactor:
    """Hides known secret values and the shapes of unknown ones.

        redactor = Redactor([api_key, token], urls=[base_url])
        message = redactor.text(message)      # known values, then shapes
        body = redactor.body(body)            # bytes: known values only, cheap

    Immutable; build one where the secrets are known (a client, the service) and share it.
    """

    __slots__ = ("_bytes", "_values")

    def __init__(self, values: Iterable[str | None] = (), *, urls: Iterable[str | None] = ()):
        found: list[str] = []
        for value in values:
            if value:
                found += (value, value.strip(), quote(value, safe=""))
        for url in urls:
            found += url_secrets(url)
        unique = {v for v in found if len(v) >= MIN_SECRET_CHARS}
        # Longest first: a value inside another (a password inside its Basic credentials'
        # text, say) must not break the longer one up before it is found.
        self._values: tuple[str, ...] = tuple(sorted(unique, key=len, reverse=True))
        self._bytes = tuple(v.encode() for v in self._values)

    def with_values(self, *values: str | None) -> Redactor:
        """This redactor with more known values."""
        return Redactor((*self._values, *values))

    def text(self, text: str) -> str:
        """`text` with every known value and every secret shape hidden."""
        return hide_shapes(self.known(text))

    def known(self, text: str) -> str:
        """`text` with every known value hidden (shapes are left: the model's own text)."""
        for value in self._values:
            if value in text:
                text = text.replace(value, REDACTED)
        return text

    def error(self, error: BaseException) -> str:
        """The message to show for `error`, every secret hidden. An llmgather error's own
        message (and args) are redacted in place too: it may be raised to the caller."""
        if not isinstance(error, APIError):
            return self.text(str(error) or type(error).__name__)
        message = self.text(error.message)
        if message != error.message:
            error.message = message
            error.args = (message,)
        return message

    def body(self, body: bytes) -> bytes:
        """A relayed body with every known value hidden: one `in` check per value."""
        for value in self._bytes:
            if value in body:
                body = body.replace(value, _REDACTED_BYTES)
        return body

    def stream(self) -> StreamScrubber:
        return StreamScrubber(self)

    def __bool__(self) -> bool:
        return bool(self._values)

    def __repr__(self) -> str:
        return f"<Redactor of {len(self._values)} known values and the shapes of keys>"


class StreamScrubber:
    """A relayed stream's chunks with every known value hidden, even one split across two
    chunks: what follows a chunk's last line break waits for the next chunk (server-sent
    events end in a blank line, so a whole event is never held back)."""

    __slots__ = ("_held", "_redactor")

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._held = b""

    def feed(self, chunk: bytes) -> bytes:
        if not self._redactor:
            return chunk
        data = self._held + chunk if self._held else chunk
        end = data.rfind(b"\n") + 1
        self._held = data[end:]
        return self._redactor.body(data[:end]) if end else b""

    def flush(self) -> bytes:
        held, self._held = self._held, b""
        return self._redactor.body(held)


def url_secrets(url: str | None) -> tuple[str, ...]:
    """What in a URL is a secret: its user and password (as written and percent-decoded),
    the `Basic` credentials built from them, and its query's values."""
    if not url:
        return ()
    userinfo, at, _ = url.partition("#")[0].partition("?")[0].rpartition("@")
    secrets: list[str] = []
    if at:
        userinfo = userinfo.partition("://")[2] or userinfo
        user, _, password = userinfo.partition(":")
        secrets += [user, password, unquote(user), unquote(password), userinfo]
        secrets.append(basic_credentials(unquote(user), unquote(password)).partition(" ")[2])
    query = url.partition("#")[0].partition("?")[2]
    for field in query.split("&"):
        value = field.partition("=")[2]
        secrets += [value, unquote(value)]
    return tuple(dict.fromkeys(s for s in secrets if len(s) >= MIN_SECRET_CHARS))


def basic_credentials(user: str, password: str) -> str:
    """The `Authorization` value of HTTP basic auth for a URL's user and password."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def redact_url(url: str | None) -> str | None:
    """The URL without its user info, and with the values of its query hidden: either may
    hold a credential. The query's names stay, so a changed `?api-version=` still shows.

    Taken apart by hand, not by `urlsplit`: it must also show the malformed URLs that
    `urlsplit` refuses (`http://user:pw@[::1`), in the message that refuses them.
    """
    if not url:
        return url
    rest = url.partition("#")[0]
    rest, question, query = rest.partition("?")
    scheme, sep, rest = rest.partition("://")
    if not sep:
        scheme, rest = "", scheme
    # Everything up to the last "@" is user info, even with a "/" in it that a password
    # should have percent-encoded: showing too little beats showing a password.
    rest = rest.rpartition("@")[2]
    shown_query = "&".join(
        f"{field.partition('=')[0]}=…" if "=" in field else "…"
        for field in query.split("&")
        if field
    )
    return (f"{scheme}://" if sep else "") + rest + (f"?{shown_query}" if question else "")
