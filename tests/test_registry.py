"""How a model string and the environment pick the provider, the model and the key."""

from __future__ import annotations

import pytest

from llmgather import ConfigurationError, Request
from llmgather.providers.gemini import GeminiProvider
from llmgather.providers.registry import redact_url, resolve_target


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
