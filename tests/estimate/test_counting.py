"""The estimate's parts on their own: tiktoken fed offline agrees with an independent encoder
(bpe-openai's Rust one) token for token; a corrupt cached file is replaced, not trusted; the
simulator's expected answer length is what it answers; the time the limits allow."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import pytest

from llmgather._config import Limits
from llmgather.estimate.counting import counter_for
from llmgather.estimate.figures import _time
from llmgather.estimate.output import expectation_for
from llmgather.estimate.tiktoken_offline import _feed_cache, _load, _shipped_file
from llmgather.sim.text import generate

TEXTS = [
    "Why do some birds migrate?",
    "Zähle die Wörter: naïve café, 東京タワー, Ελληνικά, and 1234567 numbers!!",
    "def f(x):\n    return x ** 2  # squares\n\n\n\tindented\r\n",
    "   leading and trailing spaces   ",
    "I'm sure they'll say it's THE best—isn't it? https://example.com/a?b=c&d=e",
    "A" * 500 + " " + "ab" * 300,
    "🙂🙃 emoji, \u200b zero width, and <|endoftext|> as plain text",
]


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
def test_tiktoken_offline_agrees_with_an_independent_encoder(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    loaded = _load(name)  # not `load_encoding`'s per-process memo: this cache folder, empty
    assert loaded.encoding is not None, loaded.why_not
    with warnings.catch_warnings():
        # bpe-openai reads its files with importlib.resources' deprecated open_binary: its
        # own business (llmgather only reads its data files, never imports it).
        warnings.simplefilter("ignore", DeprecationWarning)
        import bpe_openai
    other = bpe_openai.get_encoding(name)
    for text in TEXTS:
        assert loaded.encoding.encode_ordinary(text) == other.encode(text, disallowed_special=()), (
            text
        )


def test_a_corrupt_cached_file_is_replaced(tmp_path: Path) -> None:
    shipped = _shipped_file("o200k_base")
    assert shipped is not None
    _feed_cache(tmp_path, "o200k_base", shipped)
    [cached] = list(tmp_path.iterdir())
    good = cached.read_bytes()
    cached.write_bytes(b"not the file")
    _feed_cache(tmp_path, "o200k_base", shipped)
    assert cached.read_bytes() == good
    assert hashlib.sha256(good).hexdigest().startswith("446a9538")
    assert [p.name for p in tmp_path.iterdir()] == [cached.name]  # no temporary left behind


def test_openai_chat_framing_is_counted() -> None:
    counter = counter_for("openai", "gpt-4o-mini", simulated=False)
    assert counter.exact and counter.method == "tiktoken o200k_base"
    # "Hi" is one token, "user" one: 3 (message) + 1 + 1, and 3 priming the reply.
    assert counter.count([{"role": "user", "content": "Hi"}]) == 8
    named = [{"role": "user", "content": "Hi", "name": "ann"}]
    assert counter.count(named) == 8 + 1 + 1
    assert counter_for("openai", "gpt-4", simulated=False).method == "tiktoken cl100k_base"
    unknown = counter_for("openai", "my-local-model", simulated=False)
    assert not unknown.exact and unknown.note == "tiktoken knows no encoding for my-local-model"


@pytest.mark.parametrize("max_tokens", [None, 10, 30, 64])
def test_the_simulators_expected_length_is_what_it_answers(max_tokens: int | None) -> None:
    expectation = expectation_for(None, None, simulated=True, default_max_tokens=None)
    prompts = [f"prompt number {i}" for i in range(4000)]
    answered = sum(generate(p, seed=0, max_tokens=max_tokens).output_tokens for p in prompts)
    expected = expectation.expected(max_tokens)
    assert expected is not None
    assert abs(expected * len(prompts) - answered) <= 0.02 * answered
    assert expectation.worst(max_tokens) == min(max_tokens or 64, 64)


def test_the_time_the_limits_allow() -> None:
    limits = Limits(rpm=100, tpm=10_000, otpm=1_000)
    # 50 requests: 30 s by rpm; 6,000 tokens: 36 s by tpm; 1,000 output: 60 s by otpm.
    assert _time(limits, 50, 5_000, 1_000) == (60.0, "otpm")
    assert _time(limits, 50, 5_000, None) == (None, None)  # the output unknown
    assert _time(Limits(), 50, 5_000, 1_000) == (None, None)  # no limit given
    # A day's requests go at once; each day's worth past the first waits a whole day.
    assert _time(Limits(rpd=100), 250, 0, 0) == (60 * 1440 * 2, "rpd")
    assert _time(Limits(rpd=100, rpm=1), 100, 0, 0) == (6000.0, "rpm")
