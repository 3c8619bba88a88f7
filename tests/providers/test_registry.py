"""How a model string and the environment pick the provider, the model and the key."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import orjson
import pytest

import llmgather
from llmgather import ConfigurationError, Request
from llmgather.jobs.inputs import read_inputs
from llmgather.jobs.job import Job
from llmgather.jobs.options import InputOptions, JobOptions
from llmgather.providers.gemini import GeminiProvider
from llmgather.providers.registry import PROVIDERS, ProviderSpec, redact_url, resolve_target


def test_an_explicit_key_goes_only_to_the_provider_the_model_belongs_to() -> None:
    target = resolve_target("gpt-4o", api_key="sk-openai", env={"ANTHROPIC_API_KEY": "a"})
    assert (target.provider, target.api_key) == ("openai", "sk-openai")
    target = resolve_target("claude-x", api_key="k", env={"OPENAI_API_KEY": "o"})
    assert (target.provider, target.api_key) == ("anthropic", "k")


def test_a_bare_model_of_a_provider_without_its_key_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY is not set"):
        resolve_target("gpt-4o", env={"ANTHROPIC_API_KEY": "a"})


def test_a_bare_model_of_no_known_family_goes_where_a_key_is() -> None:
    target = resolve_target("llama3", env={"GEMINI_API_KEY": "g"})
    assert (target.provider, target.api_key) == ("gemini", "g")


def test_without_keys_the_simulator_answers_in_the_models_own_dialect() -> None:
    assert resolve_target("claude-3-5-haiku-latest", env={}).provider == "anthropic"
    assert resolve_target("gemini-2.0-flash", env={}).simulated
    assert resolve_target(None, env={}).provider == "openai"


def test_sim_strings() -> None:
    gemini = resolve_target("sim:gemini", env={})
    assert (gemini.provider, gemini.model, gemini.simulated) == (
        "gemini",
        "gemini-2.0-flash",
        True,
    )
    assert resolve_target("sim:anthropic:", env={}).model == "claude-3-5-haiku-latest"
    assert resolve_target("sim:my-model", env={}).model == "my-model"
    assert resolve_target("sim:claude-x", env={}).provider == "anthropic"


def test_fine_tuned_openai_models_keep_their_colons() -> None:
    name = "ft:gpt-4o-mini:org:custom:abc123"
    target = resolve_target(name, env={"OPENAI_API_KEY": "o"})
    assert (target.provider, target.model) == ("openai", name)
    with pytest.raises(ConfigurationError, match="unknown provider 'mistral'"):
        resolve_target("mistral:large", env={})


def test_described_and_stored_urls_hide_passwords_and_queries() -> None:
    assert redact_url("http://u:pw@127.0.0.1:8000/v1?key=pw&v=2") == (
        "http://127.0.0.1:8000/v1?key=…&v=…"
    )
    assert redact_url("http://[::1]:0/v1") == "http://[::1]:0/v1"
    assert redact_url("http://Host:99999/v1") == "http://Host:99999/v1"  # never raises
    target = resolve_target("x", base_url="https://u:pw@host/v1", env={})
    assert "pw" not in target.describe() and "pw" not in repr(target)


def test_gemini_tuned_models_use_their_own_resource_path() -> None:
    provider = GeminiProvider(api_key="k", base_url="http://h")
    request = Request.from_prompt("x")
    url = provider.build_request(request, model="tunedModels/abc-1", stream=False).url
    assert url == "http://h/v1beta/tunedModels/abc-1:generateContent"
    url = provider.build_request(request, model="gemini-2.0-flash", stream=True).url
    assert url == "http://h/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"


# -- the registry is the only list of providers ------------------------------------------------

SOURCE = Path(llmgather.__file__).parent
# Where provider names belong: the registry and the adapters, the simulator's and the
# gateway's dialects (each one a provider's wire format, known by its name), and the mapping of
# each official SDK's exceptions to its provider's adapter.
# Where each provider is its own case: its adapter, its dialects, and its official SDK's
# errors and answers (told apart by the SDK's package, which bears the provider's name).
PROVIDER_HOMES = (
    "providers/",
    "sim/dialects/",
    "service/dialects/",
    "_sdk_errors.py",
    "_sdk_answers.py",
)
# The same words meaning something else: the openai SDK's package name (a bench extra); the
# gateway asking whether its client speaks its upstream's dialect (the one question it asks).
NOT_THE_PROVIDER = {
    ("cli/bench.py", "openai"),
    ("service/gateway.py", "front.name == upstream.target.provider"),
}


def provider_mentions(source: str) -> list[tuple[int, str]]:
    """(line, text) of every provider name written out, and every comparison of a provider."""
    hits = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and node.value in PROVIDERS:
            hits.append((node.lineno, node.value))
        elif isinstance(node, ast.Compare) and not _is_none_check(node):
            if any(_is_provider(o) for o in (node.left, *node.comparators)):
                hits.append((node.lineno, ast.unparse(node)))
    return hits


def _is_none_check(node: ast.Compare) -> bool:
    # `provider is not None` asks whether an adapter is built yet, not which provider it is.
    return all(isinstance(op, ast.Is | ast.IsNot) for op in node.ops) and all(
        isinstance(c, ast.Constant) and c.value is None for c in node.comparators
    )


def _is_provider(node: ast.expr) -> bool:
    return (isinstance(node, ast.Name) and node.id == "provider") or (
        isinstance(node, ast.Attribute) and node.attr == "provider"
    )


def test_the_check_finds_a_provider_chosen_outside_the_registry() -> None:
    found = provider_mentions(
        'if request.extra and provider != "openai":\n    pass\n'
        "if target.provider == spec.name:\n    pass\n"
        'DIALECTS = ("gemini", "anthropic")\n'
    )
    assert sorted(line for line, _ in found) == [1, 1, 3, 5, 5]


def test_the_registry_is_the_only_list_of_providers() -> None:
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        where = path.relative_to(SOURCE).as_posix()
        if where.startswith(PROVIDER_HOMES):
            continue
        for line, text in provider_mentions(path.read_text(encoding="utf-8")):
            if (where, text) not in NOT_THE_PROVIDER:
                found.append(f"{where}:{line}: {text}")
    assert found == [], "say it in providers/registry.py (a ProviderSpec field) instead"


def test_only_providers_that_take_batch_body_fields_get_them(tmp_path: Path) -> None:
    line = {
        "custom_id": "r1",
        "url": "/v1/chat/completions",
        "body": {"messages": [{"role": "user", "content": "Hi"}], "seed": 3},
    }
    path = tmp_path / "batch.jsonl"
    path.write_bytes(orjson.dumps(line) + b"\n")
    job = Job(
        JobOptions(input=InputOptions(path=str(path)), output_path=str(tmp_path / "out.jsonl"))
    )
    takers = {name for name, spec in PROVIDERS.items() if spec.accepts_batch_body_fields}
    assert takers == {"openai"}

    async def sent(spec: ProviderSpec) -> list[Request]:
        pending = iter(read_inputs(str(path)))
        return [r async for r in job._requests(pending, spec.accepts_batch_body_fields)]

    for name, spec in PROVIDERS.items():
        [request] = asyncio.run(sent(spec))
        assert request.extra == ({"seed": 3} if name in takers else None), name
