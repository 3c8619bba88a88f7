"""A Gemini 429 that names its per-minute quota's value paces the key at that value, as an
announced limit does, instead of the rate AIMD would guess: the engine on a fake clock, with
the 429 mapped from Google's own body by the real adapter."""

from __future__ import annotations

import itertools
import random

import orjson

from llmgather import Limits, LocalLimiter, Request, RetryPolicy
from llmgather._engine import Engine
from llmgather._exchange import error_from_answer
from llmgather._types import Completion, Outcome, Usage
from llmgather.providers.gemini import GeminiProvider
from tests.fakeclock import FakeClock

LATENCY = 0.1
QUOTA_RPM = 60  # one request a second


def exhausted_body(quota_id: str, value: str) -> bytes:
    """Google's 429 body for a violated quota (RESOURCE_EXHAUSTED, QuotaFailure, RetryInfo)."""
    return orjson.dumps(
        {
            "error": {
                "code": 429,
                "message": "You exceeded your current quota, please check your plan and "
                "billing details.",
                "status": "RESOURCE_EXHAUSTED",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                        "violations": [
                            {
                                "quotaMetric": "generativelanguage.googleapis.com/"
                                "generate_content_free_tier_requests",
                                "quotaId": quota_id,
                                "quotaDimensions": {"location": "global", "model": "m"},
                                "quotaValue": value,
                            }
                        ],
                    },
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"},
                ],
            }
        }
    )


class QuotaServer:
    """Answers after LATENCY; the first request gets the 429 naming a 60-a-minute quota."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.sends: list[float] = []
        self.provider = GeminiProvider(api_key="k")

    async def __call__(self, request: Request) -> Outcome:
        self.sends.append(self.clock.elapsed)
        first = len(self.sends) == 1
        await self.clock.sleep(LATENCY)
        if first:
            body = exhausted_body(
                "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", str(QUOTA_RPM)
            )
            raise error_from_answer(self.provider, 429, {}, body)
        return Outcome(Completion(text="ok", usage=Usage(5, 7)))


async def test_the_quota_a_429_names_paces_every_send_after_it() -> None:
    clock = FakeClock()
    server = QuotaServer(clock)
    limiter = LocalLimiter(Limits(concurrency=16), clock=clock)  # told nothing: slow start
    engine = Engine(
        server,
        limiter=limiter,
        workers=16,
        retry=RetryPolicy(max_attempts=4),
        clock=clock,
        rng=random.Random(0),
    )
    prompts = [Request.from_prompt(f"p{i}", id=f"r{i}") for i in range(20)]

    async def run() -> list[object]:
        return [result async for result in engine.map(prompts)]

    results = await clock.run(run())
    assert len(results) == 20 and all(r.ok for r in results)  # type: ignore[attr-defined]
    stats = limiter.statistics()
    assert dict(stats.limits) == {"rpm": QUOTA_RPM} and dict(stats.learned) == {"rpm": QUOTA_RPM}
    assert dict(stats.found) == {}  # announced, not searched for
    # The first wave of 8 went at once; the 429 came back at 0.1 s with the budget spent, so
    # from then on one send a second: the other 12 and the refused one's retry, 13 in all.
    after = [t for t in server.sends if t > 0]
    assert len(after) == 13
    assert after[0] >= LATENCY + 1.0 - 1e-9  # a second after the 429 emptied the budget
    assert all(b - a >= 1.0 - 1e-9 for a, b in itertools.pairwise(after))
    assert after[-1] <= LATENCY + 13.0 + 1e-9  # and no slower than the quota allows
