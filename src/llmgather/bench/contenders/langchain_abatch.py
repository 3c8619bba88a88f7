"""LangChain: `ChatOpenAI.abatch` with `max_concurrency`, and an `InMemoryRateLimiter` when
the request rate is known (it limits requests only; LangChain has no token limiter)."""

from langchain_core.rate_limiters import InMemoryRateLimiter
from langchain_openai import ChatOpenAI


async def main(prompts, *, base_url, max_tokens, concurrency=32, rpm=None, **_):
    rate_limiter = None
    if rpm:
        rate_limiter = InMemoryRateLimiter(requests_per_second=rpm / 60, max_bucket_size=rpm / 60)
    llm = ChatOpenAI(
        model="gpt-4o-mini",
        base_url=base_url + "/v1",
        api_key="bench",
        max_tokens=max_tokens,
        rate_limiter=rate_limiter,
    )
    messages = await llm.abatch(
        prompts, config={"max_concurrency": concurrency}, return_exceptions=True
    )
    return [m if isinstance(m, BaseException) else m.content for m in messages]
