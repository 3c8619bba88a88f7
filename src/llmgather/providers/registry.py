"""The one place that knows which providers exist, their keys, and how a model string picks one.

Model strings are `provider:model` (`openai:gpt-4o-mini`, `gemini:gemini-2.0-flash`,
`anthropic:claude-3-5-haiku-latest`), `sim:model` (the built-in simulator, OpenAI dialect) or
`sim:provider:model` (the simulator in that provider's dialect), or a bare model name: then
the provider is the one the name belongs to (`gpt-…`, `claude-…`, `gemini-…`) or else the one
whose API key is in the environment, and the simulator when no key is set.

A base URL is checked here, once, when the target is resolved: a URL that no request could be
sent to is a ConfigurationError (exit 2 from the CLI) before anything is sent, not a failure
retried once per item.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from llmgather._errors import ConfigurationError
from llmgather._redact import Redactor, redact_url
from llmgather.providers import anthropic, gemini, openai
from llmgather.providers.anthropic import DEFAULT_MAX_TOKENS as ANTHROPIC_DEFAULT_MAX_TOKENS
from llmgather.providers.anthropic import AnthropicProvider
from llmgather.providers.base import Provider
from llmgather.providers.gemini import GeminiProvider
from llmgather.providers.openai import OpenAIProvider
from llmgather.transport.proxies import PROXY_VARIABLES

DEFAULT_MODEL = "gpt-4o-mini"


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    name: str
    key_env: tuple[str, ...]
    factory: Callable[..., Provider]  # (api_key=, base_url=) -> Provider
    model_prefixes: tuple[str, ...] = ()
    # What follows a server's root in this provider's base URL, by its SDK's convention:
    # OpenAI's includes /v1; Gemini's and Anthropic's are the root itself.
    base_url_suffix: str = ""
    # Sent when a request names no max_tokens, for APIs that require one; the limiter's token
    # estimate must count it too, since the provider reserves it against the output budget.
    default_max_tokens: int | None = None
    # The model the simulator answers as when a `sim:` string names only the dialect.
    example_model: str = DEFAULT_MODEL
    # The header the API key travels in. Where it is Authorization, a base URL's
    # user:password (HTTP basic auth, in the same header) cannot go with a key.
    key_header: str = "authorization"
    # Whether the body fields of an OpenAI Batch API input line (response_format, seed, ...)
    # go to this provider as written; others would refuse fields they do not know.
    accepts_batch_body_fields: bool = False
    # Where the body takes stop sequences, as a path of keys: what a request translated from
    # another API's (the gateway's) carries its `stop` to.
    stop_field: tuple[str, ...] = ("stop",)
    # The provider's id in genai-prices' table (`pricing.catalogue`), where it is not `name`.
    prices_id: str | None = None
    # Whether tiktoken's encodings count its models' prompts as the API bills them (the dry
    # run's exact count, `estimate.counting`); other providers publish no offline tokenizer.
    counted_by_tiktoken: bool = False


PROVIDERS: dict[str, ProviderSpec] = {
    "openai": ProviderSpec(
        "openai",
        ("OPENAI_API_KEY",),
        OpenAIProvider,
        ("gpt-", "o1", "o3", "o4", "chatgpt-", "ft:"),
        base_url_suffix="/v1",
        key_header=openai.KEY_HEADER,
        accepts_batch_body_fields=True,
        counted_by_tiktoken=True,
    ),
    "gemini": ProviderSpec(
        "gemini",
        ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
        GeminiProvider,
        ("gemini-", "gemma-"),
        example_model="gemini-2.0-flash",
        key_header=gemini.KEY_HEADER,
        prices_id="google",
        stop_field=("generationConfig", "stopSequences"),
    ),
    "anthropic": ProviderSpec(
        "anthropic",
        ("ANTHROPIC_API_KEY",),
        AnthropicProvider,
        ("claude-",),
        default_max_tokens=ANTHROPIC_DEFAULT_MAX_TOKENS,
        example_model="claude-3-5-haiku-latest",
        key_header=anthropic.KEY_HEADER,
        stop_field=("stop_sequences",),
    ),
}


def register(spec: ProviderSpec) -> None:
    PROVIDERS[spec.name] = spec


@dataclass(frozen=True, slots=True)
class Target:
    """Where requests go. `simulated` means: start the embedded simulator and use its URL."""

    provider: str
    model: str
    base_url: str | None = field(default=None, repr=False)  # may hold a password
    simulated: bool = False
    api_key: str | None = field(default=None, repr=False)

    @property
    def spec(self) -> ProviderSpec:
        return PROVIDERS[self.provider]

    def build(self, base_url: str | None = None) -> Provider:
        return self.spec.factory(api_key=self.api_key, base_url=base_url or self.base_url)

    def describe(self) -> str:
        if self.simulated:
            where = "the built-in simulator"
        else:
            where = redact_url(self.base_url) or "the provider's API"
        return f"{self.provider}:{self.model} via {where}"


def check_base_url(url: str, spec: ProviderSpec, *, api_key: str | None) -> None:
    """Refuse a base URL no request could be sent to, naming it (redacted) and the fix.

    Credentials in the URL (`http://user:password@host/v1`) are supported as HTTP basic auth,
    for a server behind a proxy that asks for a login, unless the provider's key travels in
    the same Authorization header (OpenAI's `Bearer` key): then the two cannot both be sent,
    and the URL is refused rather than one of them silently dropped.
    """
    shown = redact_url(url)
    example = "give the server's address as http://HOST[:PORT]/PATH, e.g. http://127.0.0.1:8080"
    example += spec.base_url_suffix

    def refuse(problem: str) -> ConfigurationError:
        return ConfigurationError(f"--base-url {shown!r} {problem}: {example}")

    if not url.strip():
        raise refuse("is empty")
    if any(char.isspace() or not char.isprintable() for char in url):
        raise refuse("contains spaces or control characters")
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed "[" of an IPv6 host, and the like
        raise refuse("is not a valid URL (an IPv6 host is written in brackets: [::1])") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise refuse("is not an http:// or https:// URL")
    if not parts.hostname:
        raise refuse("names no host")
    try:
        port = parts.port
    except ValueError:  # the message would quote the port's text: never show it
        port = -1
    if port is not None and not 1 <= port <= 65535:
        raise refuse("has an invalid port (a port is a number from 1 to 65535)")
    if "@" in parts.netloc and api_key and spec.key_header == "authorization":
        raise ConfigurationError(
            f"--base-url {shown!r} has a user:password, which would go in the Authorization "
            f"header that already carries the {spec.name} API key: remove user:password from "
            "the URL, or give no API key (--api-key, "
            f"{' / '.join(spec.key_env)}) if the server takes the login instead"
        )


def resolve_target(
    model: str | None,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    env: Mapping[str, str],
) -> Target:
    """Pick the provider, model and key for a model string; never prints the key.

    Raises ConfigurationError for a model string, key or base URL that cannot work: a key
    with a line break (or another character no HTTP header carries) is refused here, naming
    where it came from, rather than failing every request.
    """
    api_key = api_key.strip() if api_key else None
    target = _resolve(model, base_url=base_url, api_key=api_key, env=env)
    if target.api_key and not target.simulated:
        _check_key(target.api_key, target.spec, given=api_key, env=env)
    if base_url is not None:
        # A simulated target ignores the URL, but a malformed one is a mistake all the same.
        key = None if target.simulated else target.api_key
        check_base_url(base_url, PROVIDERS[target.provider], api_key=key)
    return target


def _resolve(
    model: str | None,
    *,
    base_url: str | None,
    api_key: str | None,
    env: Mapping[str, str],
) -> Target:
    text = (model or "").strip()
    prefix, sep, rest = text.partition(":")
    if sep and prefix == "sim":
        dialect, _, sim_model = rest.partition(":")
        if dialect in PROVIDERS:  # sim:anthropic:claude-x, or sim:gemini for its default model
            model_name = sim_model or PROVIDERS[dialect].example_model
            return Target(dialect, model_name, simulated=True, api_key="sim")
        spec = _provider_named_by(rest) or PROVIDERS["openai"]  # sim:claude-x is Anthropic's
        return Target(spec.name, rest or DEFAULT_MODEL, simulated=True, api_key="sim")
    if sep and prefix in PROVIDERS:
        return _explicit(PROVIDERS[prefix], rest, base_url=base_url, api_key=api_key, env=env)
    looks_like_provider = prefix.isidentifier() and prefix.islower()
    if sep and not base_url and looks_like_provider and prefix not in _MODEL_NAME_PREFIXES:
        known = ", ".join(sorted(PROVIDERS))
        raise ConfigurationError(
            f"unknown provider {prefix!r} in model {text!r}; known providers: {known}, "
            "and sim (the built-in simulator). An OpenAI-compatible server is reached with "
            "--model openai:MODEL --base-url URL."
        )
    return _bare(text, base_url=base_url, api_key=api_key, env=env)


# Colons that belong to a model's own name, not to a provider prefix: OpenAI's fine-tuned models.
_MODEL_NAME_PREFIXES = frozenset({"ft"})


def _explicit(
    spec: ProviderSpec,
    model: str,
    *,
    base_url: str | None,
    api_key: str | None,
    env: Mapping[str, str],
) -> Target:
    if not model:
        raise ConfigurationError(f"the model string names no model after {spec.name + ':'!r}")
    key = api_key or _key_from_env(spec, env)
    if key is None and base_url is None:
        names = " or ".join(spec.key_env)
        raise ConfigurationError(
            f"{spec.name}:{model} needs an API key: set {names}, or pass --base-url for a "
            f"server that needs none, or use sim:{spec.name}:{model} for the built-in simulator"
        )
    return Target(spec.name, model, base_url=base_url, api_key=key)


def _bare(
    model: str, *, base_url: str | None, api_key: str | None, env: Mapping[str, str]
) -> Target:
    if base_url:
        # A bare model with a URL: an OpenAI-compatible server (vLLM, llama-server, Ollama).
        openai = PROVIDERS["openai"]
        key = api_key or _key_from_env(openai, env)
        return Target("openai", model or DEFAULT_MODEL, base_url=base_url, api_key=key)
    named = _provider_named_by(model)
    if api_key:
        # An explicit key goes only where the model's name says, never to another provider.
        spec = named or PROVIDERS["openai"]
        return Target(spec.name, model or DEFAULT_MODEL, api_key=api_key)
    with_keys = [spec for spec in PROVIDERS.values() if _key_from_env(spec, env)]
    if not with_keys:  # the simulator, in the dialect of the provider the model belongs to
        spec = named or PROVIDERS["openai"]
        return Target(spec.name, model or spec.example_model, simulated=True, api_key="sim")
    if named is not None and named not in with_keys:
        raise ConfigurationError(
            f"{model} is a model of {named.name}, but {' or '.join(named.key_env)} is not set; "
            f"set it, or name another provider with --model PROVIDER:MODEL"
        )
    spec = named or with_keys[0]
    if not model:
        raise ConfigurationError(
            f"{spec.key_env[0]} is set, so requests would go to {spec.name}: name the model "
            f"with --model {spec.name}:MODEL"
        )
    return Target(spec.name, model, api_key=_key_from_env(spec, env))


def unsendable(value: str) -> str | None:
    """What in a secret no HTTP header can carry (a line break, most often: a key pasted or
    read from a file with its newline), or None."""
    if "\n" in value or "\r" in value:
        return "a line break"
    if any(not " " <= char <= "~" for char in value):
        return "a control or non-ASCII character"
    return None


def _check_key(key: str, spec: ProviderSpec, *, given: str | None, env: Mapping[str, str]) -> None:
    problem = unsendable(key)
    if problem is None:
        return
    if key == given:
        where = "the API key given (--api-key, or api_key=)"
    else:
        where = next((n for n in spec.key_env if env.get(n, "").strip() == key), "the API key")
    raise ConfigurationError(
        f"{where} contains {problem}, which no HTTP header can carry: nothing was sent; give the "
        "key alone, on one line"
    )


def secrets_redactor(
    env: Mapping[str, str], *given: str | None, urls: tuple[str | None, ...] = ()
) -> Redactor:
    """A Redactor of every secret this process knows: the keys `given`, the URLs' credentials
    (the proxy variables' too), and the key variable of every provider (those `register` adds
    too) set in `env`, which an official SDK of the user's own may have read and sent without
    llmgather."""
    from_env = (env.get(name) for spec in PROVIDERS.values() for name in spec.key_env)
    proxies = tuple(env.get(name) for name in PROXY_VARIABLES)
    return Redactor((*given, *from_env), urls=(*urls, *proxies))


def _provider_named_by(model: str) -> ProviderSpec | None:
    for spec in PROVIDERS.values():
        if spec.model_prefixes and model.startswith(spec.model_prefixes):
            return spec
    return None


def _key_from_env(spec: ProviderSpec, env: Mapping[str, str]) -> str | None:
    for name in spec.key_env:
        value = env.get(name, "").strip()
        if value:
            return value
    return None
