"""No secret reaches anything llmgather prints, logs, stores or answers.

First the redaction module itself (every shape of key and token, a value split across a
stream's chunks) and the adapters (a key straddling the part of a body a message quotes).
Then the one test that feeds every secret (a canary key of each provider, a key of no known
shape, a basic-auth password and the `Basic` value built from it, a key query parameter, a
service token) through every path that can show text: `llmgather run`'s output, `--json`,
job store and stderr; the library's Results and exceptions; SDK callables (`map_calls`,
`run_job`); `llmgather serve`'s gateway relay and translation (plain and streamed),
`/generate`, `/v1/jobs`, metrics and logs. The upstream is a server that quotes every
request's key, URL and headers back (tests/tattler.py), in its errors and in its answers.
Last, the ways keys are given: key files, and keys that no header can carry.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from anthropic import AsyncAnthropic
from openai import AsyncOpenAI

import llmgather
from llmgather import APIError, Client, RetryPolicy, run_job
from llmgather._redact import Redactor
from llmgather.providers._common import SNIPPET_CHARS
from llmgather.providers.anthropic import AnthropicProvider
from llmgather.providers.base import Provider
from llmgather.providers.gemini import GeminiProvider
from llmgather.providers.openai import OpenAIProvider
from llmgather.service import ServiceSettings
from tests.clihelpers import read_jsonl, run_cli
from tests.loopbackserver import serving_handler
from tests.service.jobclient import finished, prompts, until
from tests.servicefixtures import served_by_cli, serving
from tests.tattler import Tattler, tattling

KEY = "sk-proj-Zq8vW2mN4xR7tY1uI5oP9aS3dF6gH0jK"
# How each provider's key travels, as a proxy that dumps the request's headers shows it.
ECHOED = {
    "openai": f"authorization: Bearer {KEY}",
    "gemini": f"x-goog-api-key: {KEY}",
    "anthropic": f"x-api-key: {KEY}",
}
FACTORIES = {"openai": OpenAIProvider, "gemini": GeminiProvider, "anthropic": AnthropicProvider}


def fragments(secret: str, size: int = 4) -> list[str]:
    return [secret[i : i + size] for i in range(len(secret) - size + 1)]


def assert_no_part_of(secret: str, text: str) -> None:
    leaked = [piece for piece in fragments(secret) if piece in text]
    assert not leaked, f"{leaked[0]!r} of the secret is in {text!r}"


def straddling(echo: str, secret: str, cut: int) -> bytes:
    """A non-JSON body (a proxy's page) where `secret` starts 8 characters before `cut`."""
    offset = echo.index(secret)
    filler = "x" * (cut - 8 - offset)
    return f"{filler}{echo}\n<p>upstream error</p>".encode()


@pytest.mark.parametrize("name", list(FACTORIES))
@pytest.mark.parametrize("status", [400, 401, 500, 502])
@pytest.mark.parametrize("cut", [SNIPPET_CHARS, SNIPPET_CHARS + 1, SNIPPET_CHARS - 10])
def test_a_key_straddling_the_quoted_part_of_a_body_is_hidden(
    name: str, status: int, cut: int
) -> None:
    provider: Provider = FACTORIES[name](api_key=KEY)
    body = straddling(ECHOED[name], KEY, cut)
    error = provider.parse_error(status, {}, body)
    assert isinstance(error, APIError)
    for text in (error.message, str(error), repr(error)):
        assert_no_part_of(KEY, text)
    assert error.message.startswith("unexpected answer: xxx")


@pytest.mark.parametrize("name", list(FACTORIES))
def test_the_url_credentials_and_query_values_are_hidden_too(name: str) -> None:
    url = "http://proxy-user:hunter2hunter2@127.0.0.1:9/v1?key=query-secret-value"
    provider: Provider = FACTORIES[name](api_key=KEY, base_url=url)
    body = f"502 from upstream for {url} with {ECHOED[name]}".encode()
    error = provider.parse_error(502, {}, body)
    assert isinstance(error, APIError)
    for secret in (KEY, "hunter2hunter2", "query-secret-value"):
        assert_no_part_of(secret, error.message)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_a_long_json_message_is_redacted_before_it_is_cut(name: str) -> None:
    message = "y" * 495 + f" key {KEY} was refused"
    body = {
        "openai": {"error": {"message": message, "type": "invalid_request_error"}},
        "gemini": {"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}},
        "anthropic": {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": message},
        },
    }[name]
    error = FACTORIES[name](api_key=KEY).parse_error(400, {}, orjson.dumps(body))
    assert isinstance(error, APIError)
    assert_no_part_of(KEY, error.message)


@asynccontextmanager
async def echoing_proxy() -> AsyncIterator[str]:
    """A proxy that answers 502 with an HTML page quoting the request's headers, the key's
    header first, placed so the key straddles the part of the body a message quotes."""

    async def answer(request: web.Request) -> web.Response:
        auth = f"authorization: {request.headers.get('authorization')}"
        rest = "\n".join(f"{name}: {value}" for name, value in request.headers.items())
        head = "<html><body><h1>502 Bad Gateway</h1><pre>"
        pad = "." * (SNIPPET_CHARS - 8 - len(head) - auth.index("sk-"))
        page = f"{head}{pad}{auth}\n{rest}</pre></body></html>"
        return web.Response(status=502, text=page, content_type="text/html")

    async with serving_handler(answer, method="POST", path="/v1/chat/completions") as url:
        yield url + "/v1"


async def test_a_result_never_carries_part_of_a_key_a_proxy_echoed() -> None:
    async with echoing_proxy() as base_url:
        client = llmgather.Client(
            "openai:m", base_url=base_url, api_key=KEY, retry=RetryPolicy(max_attempts=1)
        )
        async with client:
            [result] = await client.gather(["hello"])
    assert not result.ok and result.error is not None
    assert "502 Bad Gateway" in result.error.message  # the page is quoted, the key is not
    assert_no_part_of(KEY, orjson.dumps(result.to_dict()).decode())


async def test_a_callables_own_error_quoting_credentials_is_stored_without_them() -> None:
    # An HTTP library's error names the URL it called; Gemini's REST URL may carry ?key=.
    async def call() -> None:
        raise RuntimeError(
            "GET https://host/v1beta/models/m:generateContent?key=AIzaSECRET123&alt=sse: 500; "
            "sent Authorization: Bearer sk-SECRETSECRETSECRET"
        )

    async with Client("sim:gpt-4o-mini") as client:
        with pytest.raises(RuntimeError):
            await client.call(call)
        results = [r async for r in client.map_calls(lambda _: call(), [1])]
    assert results[0].error is not None
    message = results[0].error.message
    assert "SECRET" not in message and "key=[redacted]" in message
    assert "Bearer [redacted]" in message


# -- the redaction module ------------------------------------------------------------------------

SHAPES = {
    "openai key": ("the key sk-proj-Zq8vW2mN4xR7tY1u is refused", "the key [redacted] is refused"),
    "anthropic key": ("sk-ant-api03-AbCdEf123456 refused", "[redacted] refused"),
    "google key": ("key AIzaSyA1234567890abcdefghijklmnopqrstu", "key [redacted]"),
    "bearer": (
        "sent Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.x",
        "sent Authorization: Bearer [redacted]",
    ),
    "bare bearer": ("token Bearer abcdefgh12345678 expired", "token Bearer [redacted] expired"),
    "basic": ("got Basic YWxpY2U6UEFTU1dPUkQ= from you", "got Basic [redacted] from you"),
    "key header": ('{"x-goog-api-key": "g00gle-k3y-v4lue"}', '{"x-goog-api-key": "[redacted]"}'),
    "query": ("GET /v1/m:gen?key=s3cr3t&alt=sse", "GET /v1/m:gen?key=[redacted]&alt=sse"),
    "api_key query": ("https://h/p?api_key=s3cr3t", "https://h/p?api_key=[redacted]"),
    "url login": (
        "redis://user:hunter2@127.0.0.1:6379/0 down",
        "redis://[redacted]@127.0.0.1:6379/0 down",
    ),
    # What is no secret stays as it is.
    "words": (
        "basic authentication failed; Bearer token required",
        "basic authentication failed; Bearer token required",
    ),
    "masked": (
        "Incorrect API key provided: sk-******45",
        "Incorrect API key provided: sk-******45",
    ),
    "counts": ("max_tokens=5 monkey=1", "max_tokens=5 monkey=1"),
}


@pytest.mark.parametrize(("text", "shown"), list(SHAPES.values()), ids=list(SHAPES))
def test_every_shape_of_key_and_token_is_hidden_and_other_words_stay(text: str, shown: str) -> None:
    assert Redactor().text(text) == shown


def test_known_values_are_hidden_in_every_form_a_server_may_echo() -> None:
    url = "http://alice:p%40ss-w0rd@127.0.0.1:9/v1?key=q-v4lue&api-version=2024"
    redactor = Redactor(["plain-key-42"], urls=[url])
    basic = base64.b64encode(b"alice:p@ss-w0rd").decode()
    text = f"plain-key-42 p%40ss-w0rd p@ss-w0rd {basic} q-v4lue 2024"
    assert (
        redactor.text(text) == "[redacted] [redacted] [redacted] [redacted] [redacted] [redacted]"
    )
    assert redactor.body(text.encode()) == redactor.text(text).encode()
    assert "plain-key-42" not in repr(redactor)


def test_a_value_split_across_a_streams_chunks_is_still_hidden() -> None:
    redactor = Redactor(["plain-key-42"])
    events = b'data: {"content": "plain-key-42"}\n\ndata: [DONE]\n\n'
    for size in range(1, 12):
        scrubber = redactor.stream()
        pieces = [scrubber.feed(events[i : i + size]) for i in range(0, len(events), size)]
        # Whole lines are never held back: all is out once the chunk that ends them is.
        assert b"".join(pieces) == events.replace(b"plain-key-42", b"[redacted]")
        assert scrubber.flush() == b""


# -- every secret through every path -------------------------------------------------------------

OPENAI_KEY = "sk-proj-C4n4ry0penAIkey0123456789abcd"
ANTHROPIC_KEY = "sk-ant-api03-C4n4ryAnthr0picKey0123456789"
GEMINI_KEY = "AIzaSyC4n4ryGeminiKey0123456789abcdefgh"
PLAIN_KEY = "plain-c4n4ry-key-5b8e1d"  # of no known shape: only knowing it hides it
PASSWORD = "Pa55-c4n4ry-w0rd"
BASIC = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
QUERY_KEY = "qc4n4ry-value-31f0"
TOKEN = "svc-c4n4ry-token-9c4d2a"
CANARIES = {
    "openai key": OPENAI_KEY,
    "anthropic key": ANTHROPIC_KEY,
    "gemini key": GEMINI_KEY,
    "plain key": PLAIN_KEY,
    "password": PASSWORD,
    "basic credentials": BASIC,
    "query key": QUERY_KEY,
    "service token": TOKEN,
}
Shown = list[bytes]


def login_url(tattler: Tattler, path: str = "") -> str:
    """The tattler's URL with a basic-auth login and a key query parameter."""
    return tattler.url.replace("//", f"//alice:{PASSWORD}@") + f"{path}?key={QUERY_KEY}"


def files_under(folder: Path) -> Shown:
    return [p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()]


def stored_errors(folder: Path) -> list[dict[str, Any]]:
    """The errors of every result line the service's jobs stored."""
    lines = (line for path in folder.rglob("results.jsonl") for line in read_jsonl(path))
    return [line["error"] for line in lines if line.get("error")]


def echoed(tattler: Tattler, *secrets: str) -> None:
    """The upstream did receive (and so quote back) each of these secrets."""
    for secret in secrets:
        assert any(secret in seen for seen in tattler.seen), f"{secret} never reached the upstream"


async def through_cli_run(tattler: Tattler, tmp_path: Path) -> Shown:
    """`llmgather run` as users run it: one OpenAI-compatible server behind a basic-auth login
    (no key), Anthropic with a key file, Gemini with a key of no known shape on standard input."""
    shown: Shown = []
    secret_dir = tmp_path / "secrets"
    secret_dir.mkdir()
    (secret_dir / "anthropic.key").write_text(ANTHROPIC_KEY + "\n")
    anthropic_key = str(secret_dir / "anthropic.key")
    runs: list[tuple[list[str], str | None]] = [
        (["--model", "openai:gpt-4o-mini", "--base-url", login_url(tattler, "/v1")], None),
        (["--model", "anthropic:claude-x", "--base-url", login_url(tattler),
          "--api-key-file", anthropic_key], None),
        (["--model", "gemini:gemini-2.0-flash", "--base-url", tattler.url,
          "--api-key-file", "-"], PLAIN_KEY),
    ]  # fmt: skip
    for n, (args, stdin) in enumerate(runs):
        work = tmp_path / f"run{n}"
        work.mkdir()
        lines = [{"id": m, "prompt": f"tattle:{m}"} for m in ("page", "refuse", "after")]
        (work / "in.jsonl").write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
        done = await asyncio.to_thread(
            run_cli,
            "run", str(work / "in.jsonl"), "-o", str(work / "out.jsonl"), *args,
            "-c", "1", "--max-attempts", "1", "--json",
            stdin=None if stdin is None else stdin.encode(),
        )  # fmt: skip
        assert done.returncode == 1, done.stderr
        results = read_jsonl(work / "out.jsonl")
        assert [r["status"] for r in results] == ["error"] * 3
        shown += [done.stdout.encode(), done.stderr.encode(), *files_under(work)]
    echoed(tattler, BASIC, QUERY_KEY, ANTHROPIC_KEY, PLAIN_KEY)
    return shown


async def through_the_library(tattler: Tattler, caplog: pytest.LogCaptureFixture) -> Shown:
    """Results, raised errors and stream errors of `Client`, for a key of no known shape and
    for a key beside a basic-auth login."""
    shown: Shown = []
    once = RetryPolicy(max_attempts=1)
    clients = [
        Client(
            "openai:m", base_url=f"{tattler.url}/v1?key={QUERY_KEY}", api_key=PLAIN_KEY, retry=once
        ),
        Client(
            "anthropic:claude-x", base_url=login_url(tattler), api_key=ANTHROPIC_KEY, retry=once
        ),
    ]
    for client in clients:
        async with client:
            with pytest.raises(APIError) as streamed:
                _ = [piece async for piece in client.stream("tattle:page")]
            results = await client.gather(["tattle:page", "tattle:refuse"])
            with pytest.raises(APIError) as raised:  # the key was refused: not even sent
                await client.complete("tattle:ok")
        for error in (streamed.value, raised.value, *(r.exception for r in results)):
            shown += [str(error).encode(), repr(error).encode(), repr(vars(error)).encode()]
        shown += [orjson.dumps(r.to_dict()) for r in results]
    shown.append(caplog.text.encode())
    echoed(tattler, PLAIN_KEY, QUERY_KEY, ANTHROPIC_KEY, BASIC)
    return shown


async def through_sdk_callables(
    tattler: Tattler, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Shown:
    """The official SDKs' errors through `map_calls` and `run_job`: the openai SDK reads a key
    of no known shape from the environment itself, as the README's example has it."""
    monkeypatch.setenv("OPENAI_API_KEY", PLAIN_KEY)
    oai = AsyncOpenAI(base_url=f"{tattler.url}/v1", max_retries=0)
    ant = AsyncAnthropic(base_url=tattler.url, api_key=ANTHROPIC_KEY, max_retries=0)

    async def call(item: dict[str, str]) -> Any:
        messages: Any = [{"role": "user", "content": item["prompt"]}]
        if item["sdk"] == "anthropic":
            return await ant.messages.create(model="claude-x", max_tokens=8, messages=messages)
        return await oai.chat.completions.create(model="gpt-4o-mini", messages=messages)

    items = [
        {"id": "a", "sdk": "anthropic", "prompt": "tattle:page"},
        {"id": "o", "sdk": "openai", "prompt": "tattle:page"},
        {"id": "r", "sdk": "openai", "prompt": "tattle:refuse"},
    ]
    # run_job stores each answer too: one quoting the key (from the environment) in a 200.
    stored = [*items[:2], {"id": "k", "sdk": "openai", "prompt": "tattle:ok"}, items[2]]
    shown: Shown = []
    async with oai, ant:
        once = RetryPolicy(max_attempts=1)
        async with Client("sim:gpt-4o-mini", concurrency=1, retry=once) as client:
            results = [r async for r in client.map_calls(call, items)]
        shown += [orjson.dumps(r.to_dict()) for r in results]
        shown += [repr(vars(r.exception)).encode() for r in results if r.exception]
        path = tmp_path / "calls.jsonl"
        path.write_bytes(b"".join(orjson.dumps(item) + b"\n" for item in stored))
        summary = await run_job(
            call, str(path), str(tmp_path / "out.jsonl"), concurrency=1, retry=once, name="tattle"
        )
    assert [r.ok for r in results] == [False] * 3
    assert (summary.ok, summary.failed) == (1, 3)
    shown += [orjson.dumps(summary.to_dict()), *files_under(tmp_path)]
    echoed(tattler, PLAIN_KEY, ANTHROPIC_KEY)
    return shown


async def everything_shown(http: aiohttp.ClientSession, url: str) -> Shown:
    """What the service says on every route after traffic on each: the three dialects (one
    relayed, two translated), plain and streamed, `/generate` plain and in the background, a
    job, and every route that reads."""
    shown: Shown = []

    async def keep(response: aiohttp.ClientResponse) -> None:
        shown.append(str(response.headers).encode())
        shown.append(await response.read())

    messages = [{"role": "user", "content": "hi"}]
    asks = [
        ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": messages}),
        ("/v1/messages", {"model": "claude-x", "max_tokens": 16, "messages": messages}),
        (
            "/v1beta/models/gemini-2.0-flash:generateContent",
            {"contents": [{"parts": [{"text": "hi"}]}]},
        ),
    ]
    for path, body in asks:
        for stream in (False, True):
            if path.startswith("/v1beta"):
                path = (
                    path.replace(":generateContent", ":streamGenerateContent?alt=sse")
                    if stream
                    else path
                )
                asked = body
            else:
                asked = {**body, "stream": stream}
            async with http.post(url + path, json=asked) as response:
                await keep(response)
    async with http.post(url + "/generate", json={"prompt": "hi"}) as response:
        await keep(response)
    async with http.post(url + "/generate", json={"prompt": "hi", "background": True}) as response:
        generation = (await response.json())["id"]
    async with http.post(
        url + "/v1/jobs", data=prompts(2), headers={"content-type": "application/jsonl"}
    ) as response:
        job = (await response.json())["id"]
    await finished(http, url, job)

    async def generated() -> bool:
        async with http.get(f"{url}/generate/{generation}") as response:
            if response.status == 202:
                return False
            await keep(response)
            return True

    await until(generated, "the background /generate is done")
    for path in (
        "/v1/jobs", f"/v1/jobs/{job}", f"/v1/jobs/{job}/results", "/v1/models", "/metrics",
        "/readyz", "/healthz", "/", "/openapi.json",
    ):  # fmt: skip
        async with http.get(url + path) as response:
            await keep(response)
    async with http.get(url + "/dashboard/events") as events:
        shown.append(await events.content.readuntil(b"\n\n"))  # one snapshot
    return shown


async def through_the_service(
    tattler: Tattler, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> Shown:
    """`serve` relaying to an OpenAI upstream whose key (of no known shape) it read from the
    environment: every route while the upstream answers 200s that quote the request, then
    while it refuses the key quoting it."""
    settings = ServiceSettings(
        model="openai:gpt-4o-mini",
        base_url=f"{tattler.url}/v1?key={QUERY_KEY}",
        token=TOKEN,
        jobs_dir=tmp_path / "jobs",
        retry=RetryPolicy(max_attempts=1),
    )
    shown: Shown = []
    auth = {"authorization": f"Bearer {TOKEN}"}
    async with (
        serving(settings, env={"OPENAI_API_KEY": PLAIN_KEY}) as url,
        aiohttp.ClientSession(headers=auth) as http,
    ):
        shown += await everything_shown(http, url)
        answers = b"".join(files_under(tmp_path / "jobs"))
        assert b'"status":"ok"' in answers and b"[redacted]" in answers  # the quote, scrubbed
        tattler.mode = "refuse"
        shown += await everything_shown(http, url)
    # A refused key reads in jobs and background /generates as the gateway words it: never
    # the upstream's own text, which may quote part of the key ("sk-******45").
    errors = stored_errors(tmp_path / "jobs")
    assert len(errors) == 3  # the job's two lines, the background /generate's one
    for error in errors:
        assert "refused the API key llmgather serve was given" in error["message"]
        assert "is not valid" not in error["message"]
    shown += [caplog.text.encode(), *files_under(tmp_path / "jobs")]
    echoed(tattler, PLAIN_KEY, QUERY_KEY)
    assert not [seen for seen in tattler.seen if TOKEN in seen]  # the clients' token stays
    return shown


async def through_serve_as_users_start_it(tattler: Tattler, tmp_path: Path) -> Shown:
    """`llmgather serve` as the README starts it: the key in the provider's variable, the
    token in a file, an Anthropic upstream behind a basic-auth login."""
    (tmp_path / "token").write_text(TOKEN + "\n")
    args = ("--model", "anthropic:claude-x", "--base-url", login_url(tattler))
    shown: Shown = []
    async with (
        served_by_cli(
            tmp_path, *args, "--token-file", str(tmp_path / "token"), "--max-attempts", "1",
            ANTHROPIC_API_KEY=ANTHROPIC_KEY,
        ) as served,
        aiohttp.ClientSession(headers={"x-api-key": TOKEN}) as http,
    ):  # fmt: skip
        shown += await everything_shown(http, served.url)
        tattler.mode = "page"
        shown += await everything_shown(http, served.url)
    shown += [served.stderr, *files_under(tmp_path / "jobs")]
    echoed(tattler, ANTHROPIC_KEY, BASIC, QUERY_KEY)
    return shown


PATHS = ("cli run", "library", "sdk callables", "service", "serve as users start it")


@pytest.mark.parametrize("path", PATHS)
async def test_no_secret_reaches_anything_shown_on_any_path(
    path: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    async with tattling() as tattler:
        if path == "cli run":
            shown = await through_cli_run(tattler, tmp_path)
        elif path == "library":
            shown = await through_the_library(tattler, caplog)
        elif path == "sdk callables":
            shown = await through_sdk_callables(tattler, tmp_path, monkeypatch)
        elif path == "service":
            shown = await through_the_service(tattler, tmp_path, caplog)
        else:
            shown = await through_serve_as_users_start_it(tattler, tmp_path)
    assert shown
    for name, secret in CANARIES.items():
        for text in shown:
            at = text.find(secret.encode())
            assert at < 0, f"the {name} is shown: …{text[max(0, at - 80) : at + 40]!r}…"


# -- how keys are given --------------------------------------------------------------------------

BROKEN_KEY = "sk-first-line-SECRETPART\nsecond-line-SECRETPART"


@pytest.mark.parametrize(
    ("command", "given", "named"),
    [
        (["run"], ["--api-key", BROKEN_KEY], "--api-key"),
        (["run"], ["--api-key-file", "KEYFILE"], "--api-key-file"),
        (["run"], [], "OPENAI_API_KEY"),
        (
            ["worker", "--queue", "redis://127.0.0.1:1/0"],
            ["--api-key-file", "KEYFILE"],
            "--api-key-file",
        ),
        (["serve", "--port", "0"], ["--token-file", "KEYFILE"], "--token-file"),
    ],
    ids=["run --api-key", "run --api-key-file", "run OPENAI_API_KEY", "worker", "serve --token"],
)
async def test_a_key_with_a_line_break_stops_everything_before_sending(
    command: list[str], given: list[str], named: str, tmp_path: Path
) -> None:
    (tmp_path / "key").write_text(BROKEN_KEY + "\n")
    (tmp_path / "in.jsonl").write_bytes(b'{"prompt": "hi"}\n')
    args = [str(tmp_path / "key") if arg == "KEYFILE" else arg for arg in given]
    async with tattling() as tattler:
        if command == ["run"]:
            args += [str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl")]
            args += ["--model", "openai:gpt-4o-mini", "--base-url", f"{tattler.url}/v1"]
        env = {} if given else {"OPENAI_API_KEY": BROKEN_KEY}
        done = await asyncio.to_thread(run_cli, *command, *args, timeout=60, **env)
    assert done.returncode == 2, done.stderr
    assert named in done.stderr and "line break" in done.stderr
    assert "SECRETPART" not in done.stderr + done.stdout
    assert tattler.seen == [] and not (tmp_path / "out.jsonl").exists()


def test_a_key_with_a_line_break_is_refused_by_the_library_too() -> None:
    with pytest.raises(llmgather.ConfigurationError, match="api_key=") as refused:
        Client("openai:gpt-4o-mini", api_key=BROKEN_KEY)
    assert "SECRETPART" not in str(refused.value)
    # A newline around the key (a key file's, an `echo`'s) is no part of it.
    assert Client("openai:gpt-4o-mini", api_key=" sk-key-1234\n").target.api_key == "sk-key-1234"


@pytest.mark.parametrize(
    ("command", "files"),
    [
        ("run", ["--api-key-file"]),
        ("worker", ["--api-key-file"]),
        ("serve", ["--api-key-file", "--token-file"]),
        ("sim", ["--require-key-file"]),
    ],
)
def test_every_secret_option_has_a_file_form_that_keeps_it_out_of_ps(
    command: str, files: list[str]
) -> None:
    help_text = " ".join(run_cli(command, "--help").stdout.split())
    for option in files:
        assert f"{option} PATH" in help_text
    assert "- for standard input" in help_text and "`ps`" in help_text


def test_a_key_given_twice_is_refused(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("sk-from-a-file-1234\n")
    done = run_cli(
        "run", "in.jsonl", "-o", "out.jsonl", "--api-key", "sk-on-the-line-1234",
        "--api-key-file", str(tmp_path / "key"),
    )  # fmt: skip
    assert done.returncode == 2
    assert "give --api-key or --api-key-file, not both" in done.stderr
