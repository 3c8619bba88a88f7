"""The proxy variables as curl, requests and httpx read them: which one wins, what NO_PROXY
covers, and a proxy URL llmgather cannot use refused by name, without its password."""

from __future__ import annotations

import pytest

from llmgather import ConfigurationError
from llmgather.transport import Proxies

PROXY = "http://proxy.example:3128"


def route(env: dict[str, str], url_host: str, port: int = 443, scheme: str = "https") -> str:
    proxy = Proxies.from_env(env).for_origin(scheme, url_host, port)
    return "direct" if proxy is None else f"{proxy.address} ({proxy.source})"


def test_each_scheme_has_its_variable_and_all_proxy_fills_in() -> None:
    env = {"HTTPS_PROXY": "http://secure:1", "HTTP_PROXY": "http://plain:2"}
    assert route(env, "api.openai.com") == "secure:1 (HTTPS_PROXY)"
    assert route(env, "api.openai.com", 80, "http") == "plain:2 (HTTP_PROXY)"
    assert route({"HTTP_PROXY": "http://plain:2"}, "api.openai.com") == "direct"
    env = {"ALL_PROXY": "http://every:3", "HTTP_PROXY": "http://plain:2"}
    assert route(env, "api.openai.com") == "every:3 (ALL_PROXY)"
    assert route(env, "api.openai.com", 80, "http") == "plain:2 (HTTP_PROXY)"


def test_the_lowercase_name_wins_and_an_empty_value_is_unset() -> None:
    env = {"https_proxy": "http://lower:1", "HTTPS_PROXY": "http://upper:2"}
    assert route(env, "api.openai.com") == "lower:1 (https_proxy)"
    assert (
        route({"https_proxy": "", "HTTPS_PROXY": "http://upper:2"}, "x.com")
        == "upper:2 (HTTPS_PROXY)"
    )
    env = {"HTTPS_PROXY": PROXY, "no_proxy": "a.com", "NO_PROXY": "b.com"}
    assert route(env, "a.com") == "direct"
    assert route(env, "b.com") != "direct"


def test_an_https_proxy_is_one_reached_with_tls_on_443_unless_told() -> None:
    proxy = Proxies.from_env({"HTTPS_PROXY": "https://proxy.example"}).https
    assert proxy is not None and (proxy.scheme, proxy.port) == ("https", 443)
    assert proxy.url == "https://proxy.example:443"


def test_a_bare_host_and_port_is_an_http_proxy_and_the_port_defaults_to_80() -> None:
    assert (
        route({"HTTPS_PROXY": "proxy.example:8080"}, "x.com") == "proxy.example:8080 (HTTPS_PROXY)"
    )
    assert (
        route({"HTTPS_PROXY": "http://proxy.example"}, "x.com") == "proxy.example:80 (HTTPS_PROXY)"
    )


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "direct"),
    [
        ("*", "api.openai.com", 443, True),
        ("openai.com", "openai.com", 443, True),
        ("openai.com", "api.openai.com", 443, True),  # a name covers its subdomains
        (".openai.com", "api.openai.com", 443, True),
        ("*.openai.com", "api.openai.com", 443, True),
        ("OpenAI.com", "API.openai.com", 443, True),  # names are compared without case
        ("openai.com", "notopenai.com", 443, False),  # ... on a dot, not any suffix
        ("openai.com", "openai.com.evil.net", 443, False),
        ("api.openai.com:443", "api.openai.com", 443, True),
        ("api.openai.com:8443", "api.openai.com", 443, False),  # that port only
        ("10.1.2.3", "10.1.2.3", 443, True),
        ("10.0.0.0/8", "10.1.2.3", 443, True),
        ("10.0.0.0/8", "11.1.2.3", 443, False),
        ("::1", "::1", 443, True),
        ("[::1]:8000", "::1", 8000, True),
        ("[::1]:8000", "::1", 8001, False),
        ("localhost, 127.0.0.1", "127.0.0.1", 443, True),
        ("localhost,127.0.0.1", "localhost", 443, True),
        ("localhost", "127.0.0.1", 443, False),  # names are not resolved
        (" a.com , ,b.com ", "b.com", 443, True),
        ("", "api.openai.com", 443, False),
    ],
)
def test_no_proxy_covers_what_the_sdks_cover(
    no_proxy: str, host: str, port: int, direct: bool
) -> None:
    assert (route({"HTTPS_PROXY": PROXY, "NO_PROXY": no_proxy}, host, port) == "direct") is direct


def test_trust_env_false_uses_no_proxy_but_remembers_the_variables_for_its_errors() -> None:
    proxies = Proxies.from_env({"HTTPS_PROXY": PROXY, "NO_PROXY": "x"}, trust_env=False)
    assert proxies.for_origin("https", "api.openai.com", 443) is None
    assert proxies.unused_hint("https", "api.openai.com", 443) == (
        "; HTTPS_PROXY is set but not used (trust_env=False)"
    )


def test_credentials_are_percent_decoded_into_a_basic_header() -> None:
    proxies = Proxies.from_env({"HTTPS_PROXY": "http://us%65r:p%40ss%3Aw%C3%B6rd@proxy:3128"})
    assert proxies.https is not None
    # base64 of "user:p@ss:wörd" in UTF-8
    assert proxies.https.authorization == "Basic dXNlcjpwQHNzOnfDtnJk"
    assert Proxies.from_env({"HTTPS_PROXY": PROXY}).https.authorization is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("socks5://user:SECRET-9@127.0.0.1:1080", "names a socks5:// proxy"),
        ("socks5h://user:SECRET-9@proxy:1080", "names a socks5h:// proxy"),
        ("http://user:SECRET-9@proxy:99999", "is not a valid proxy URL"),
        ("http://user:SECRET-9@:3128", "names no proxy host"),
    ],
)
def test_a_proxy_url_llmgather_cannot_use_is_refused_by_its_variable(value: str, says: str) -> None:
    with pytest.raises(ConfigurationError) as refusal:
        Proxies.from_env({"HTTPS_PROXY": value})
    assert says in str(refusal.value)
    assert "HTTPS_PROXY" in str(refusal.value)
    assert "SECRET-9" not in str(refusal.value)


def test_all_proxy_is_not_read_where_both_schemes_have_their_own() -> None:
    env = {"HTTPS_PROXY": PROXY, "HTTP_PROXY": PROXY, "ALL_PROXY": "socks5://127.0.0.1:1080"}
    assert route(env, "api.openai.com") == "proxy.example:3128 (HTTPS_PROXY)"
