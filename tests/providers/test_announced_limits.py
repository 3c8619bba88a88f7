"""The limits an answer's headers announce, by budget name, as each adapter reads them.

(Anthropic's, with their separate input and output windows, are in test_providers_anthropic.)
"""

from __future__ import annotations

from llmgather.providers.gemini import GeminiProvider
from llmgather.providers.openai import OpenAIProvider

# The headers of a real OpenAI answer (chat completions), as OpenAI sends them.
OPENAI_HEADERS = {
    "x-ratelimit-limit-requests": "5000",
    "x-ratelimit-limit-tokens": "160000",
    "x-ratelimit-remaining-requests": "4999",
    "x-ratelimit-remaining-tokens": "159976",
    "x-ratelimit-reset-requests": "12ms",
    "x-ratelimit-reset-tokens": "9ms",
}


def test_openai_announces_requests_and_tokens_per_minute() -> None:
    provider = OpenAIProvider(api_key="k")
    assert provider.announced_limits(OPENAI_HEADERS) == {
        "rpm": 5000,
        "tpm": 160000,
        "rpm.remaining": 4999,  # what is left counts too: a restarted job does not burst
        "tpm.remaining": 159976,
    }
    only_requests = {"x-ratelimit-limit-requests": "60"}
    assert provider.announced_limits(only_requests) == {"rpm": 60}
    assert provider.announced_limits({}) == {}


def test_headers_that_announce_nothing_usable_are_ignored() -> None:
    provider = OpenAIProvider(api_key="k")
    # Azure sends -1 for "no limit"; a proxy may send anything.
    odd = {"x-ratelimit-limit-requests": "-1", "x-ratelimit-limit-tokens": "lots"}
    assert provider.announced_limits(odd) == {}
    assert provider.announced_limits({"x-ratelimit-limit-tokens": "0"}) == {}
    # A remaining above the limit, or negative, is not believed; the limit still is.
    muddled = {"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "90"}
    assert provider.announced_limits(muddled) == {"rpm": 60}


def test_gemini_announces_nothing_on_its_answers() -> None:
    assert GeminiProvider(api_key="k").announced_limits(OPENAI_HEADERS) == {}
