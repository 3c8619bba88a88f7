"""llmgather pacing a user's own SDK calls: `client.map_calls` over `AsyncOpenAI(max_retries=0)`.

The SDK object talks to the simulator itself; the llmgather client only limits and retries, so
its model and base URL name the same server (and no embedded simulator starts).
"""

from openai import AsyncOpenAI

import llmgather


async def main(prompts, *, base_url, max_tokens, rpm, concurrency=64, **_):
    sdk = AsyncOpenAI(base_url=base_url + "/v1", api_key="sim", max_retries=0)
    calls = (
        {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
        }
        for prompt in prompts
    )
    async with (
        sdk,
        llmgather.Client(
            "openai:gpt-4o-mini",
            base_url=base_url + "/v1",
            api_key="sim",
            rpm=rpm,
            concurrency=concurrency,
        ) as client,
    ):
        return [result async for result in client.map_calls(sdk.chat.completions.create, calls)]
