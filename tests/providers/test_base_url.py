"""`--base-url`: checked once, at start, with a message that names it (redacted) and the fix;
its path and query kept apart for every provider; its user:password sent as basic auth."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import llmgather
from llmgather import ConfigurationError, Request, RetryPolicy
from llmgather.providers.registry import PROVIDERS, redact_url, resolve_target
from llmgather.sim import EmbeddedSimulator, SimConfig
from tests.clihelpers import run_cli, write_prompts
from tests.loopbackserver import serving_handler
from tests.simfixtures import sim_stats_blocking

MALFORMED = {
    "http://user:hunter2@[::1": "is not a valid URL",
    "not-a-url": "is not an http:// or https:// URL",
    "ftp://files.example.com/v1": "is not an http:// or https:// URL",
    "localhost:8000/v1": "is not an http:// or https:// URL",
    "http://127.0.0.1:99999/v1": "has an invalid port",
    "http://127.0.0.1:0/v1": "has an invalid port",
    "http://user:hunter2/x@host:80a/v1": "has an invalid port",
    "http:///v1": "names no host",
    "http://user:hunter2@:8000/v1?key=hunter2": "names no host",
    "http://127.0.0.1:8000/v 1": "contains spaces",
    "": "is empty",
}


@pytest.mark.parametrize("url", list(MALFORMED))
@pytest.mark.parametrize("model", ["openai:m", "gemini:gemini-2.0-flash", "anthropic:claude-x"])
def test_a_malformed_base_url_is_refused_at_start_naming_it(url: str, model: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        resolve_target(model, base_url=url, api_key="k", env={})
    message = str(info.value)
    assert MALFORMED[url] in message
    assert f"--base-url {redact_url(url)!r}" in message
    assert "http://HOST[:PORT]/PATH" in message  # and what to write instead
    assert "hunter2" not in message


def test_redact_url_shows_any_url_without_its_secrets() -> None:
    assert redact_url("http://user:hunter2@[::1") == "http://[::1"
    assert redact_url("http://u:hunter2/x@host:80/v1?key=k1&flag") == "http://host:80/v1?key=…&…"
    assert redact_url("not-a-url") == "not-a-url"
    assert redact_url("https://h/v1#frag") == "https://h/v1"


def test_credentials_in_the_url_are_refused_beside_a_key_in_the_same_header() -> None:
    url = "http://user:hunter2@127.0.0.1:8000/v1"
    with pytest.raises(ConfigurationError, match="Authorization header") as info:
        resolve_target("openai:m", base_url=url, api_key="sk-x", env={})
    assert "hunter2" not in str(info.value)
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        resolve_target("some-model", base_url=url, env={"OPENAI_API_KEY": "sk-x"})
    # Without a key, or for a provider whose key has a header of its own, they are basic auth.
    assert resolve_target("openai:m", base_url=url, env={}).base_url == url
    resolve_target("anthropic:claude-x", base_url=url.removesuffix("/v1"), api_key="k", env={})
    resolve_target("gemini:gemini-x", base_url=url.removesuffix("/v1"), api_key="k", env={})


@pytest.mark.parametrize(
    ("name", "base", "stream", "expected"),
    [
        ("openai", "http://h/v1?api-version=2024-06-01", False,
         "http://h/v1/chat/completions?api-version=2024-06-01"),
        ("anthropic", "http://h/proxy/?team=a", True, "http://h/proxy/v1/messages?team=a"),
        ("gemini", "http://h?x=1", False, "http://h/v1beta/models/g:generateContent?x=1"),
        ("gemini", "http://h/p/?x=1", True,
         "http://h/p/v1beta/models/g:streamGenerateContent?x=1&alt=sse"),
        ("openai", "http://u:pw@h:8/v1/", False, "http://h:8/v1/chat/completions"),
    ],
)  # fmt: skip
def test_each_adapter_puts_its_path_in_the_path_and_keeps_the_query(
    name: str, base: str, stream: bool, expected: str
) -> None:
    provider = PROVIDERS[name].factory(api_key="k", base_url=base)
    http = provider.build_request(Request.from_prompt("x"), model="g", stream=stream)
    assert http.url == expected


# -- the real path: a server that records what arrives -----------------------------------------

ANSWERS: dict[str, Any] = {
    "/v1/chat/completions": {"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]},
    "/v1/messages": {"content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn"},
    "/v1beta/models/gemini-x:generateContent": {
        "candidates": [{"content": {"parts": [{"text": "ok"}]}, "finishReason": "STOP"}]
    },
}


@asynccontextmanager
async def recording_server() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(
            {
                "path": request.path,
                "query": request.query_string,
                "authorization": request.headers.get("authorization", ""),
            }
        )
        return web.json_response(ANSWERS[request.path])

    async with serving_handler(answer, method="POST") as url:
        yield url.removeprefix("http://"), seen


@pytest.mark.parametrize(
    ("model", "suffix", "key", "path"),
    [
        ("openai:m", "/v1", None, "/v1/chat/completions"),
        ("anthropic:claude-x", "", "k", "/v1/messages"),
        ("gemini:gemini-x", "", "k", "/v1beta/models/gemini-x:generateContent"),
    ],
)
async def test_a_login_and_a_query_in_the_base_url_reach_the_server(
    model: str, suffix: str, key: str | None, path: str
) -> None:
    async with recording_server() as (host, seen):
        url = f"http://proxy%40corp:p%3Ass@{host}{suffix}?tenant=t1"
        client = llmgather.Client(
            model, base_url=url, api_key=key, env={}, retry=RetryPolicy(max_attempts=1)
        )
        async with client:
            [result] = await client.gather(["hello"])
    assert result.ok, result.error
    assert seen == [
        {
            "path": path,
            "query": "tenant=t1",
            "authorization": "Basic " + base64.b64encode(b"proxy@corp:p:ss").decode(),
        }
    ]


# -- the CLI: exit 2, the URL named, nothing created, nothing sent -------------------------------


@pytest.mark.parametrize(
    "url", ["http://user:hunter2@[::1", "not-a-url", "ftp://h/v1", "http://h:99999/v1", "http://"]
)
def test_the_cli_refuses_a_malformed_base_url_with_exit_2(tmp_path: Path, url: str) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 2)
    out = tmp_path / "out.jsonl"
    result = run_cli("run", str(prompts), "-o", str(out), "-m", "openai:m", "--base-url", url)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "hunter2" not in result.stderr
    assert f"--base-url {redact_url(url)!r}" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prompts.jsonl"]  # no store, no output


def test_the_cli_sends_nothing_when_a_login_and_a_key_would_share_a_header(
    tmp_path: Path,
) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 2)
    out = tmp_path / "out.jsonl"
    with EmbeddedSimulator(SimConfig(latency_ms=0)) as sim:
        url = sim.base_url.replace("http://", "http://user:hunter2@") + "/v1"
        args = ["run", str(prompts), "-o", str(out), "-m", "openai:m", "--base-url", url]
        result = run_cli(*args, "--api-key", "sk-test")
        stats = sim_stats_blocking(sim.base_url)
    assert result.returncode == 2, result.stderr
    assert "Authorization header" in result.stderr and "hunter2" not in result.stderr
    assert stats["received"] == 0
