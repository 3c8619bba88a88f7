"""`asyncio.gather` with `AsyncOpenAI` and a semaphore capping requests in flight.

The SDK's own default retries (2, with its backoff and Retry-After handling) stay on.
"""

import asyncio

from openai import AsyncOpenAI, DefaultAioHttpClient


async def main(prompts, *, base_url, max_tokens, concurrency=10, aiohttp=False, **_):
    http_client = DefaultAioHttpClient() if aiohttp else None
    client = AsyncOpenAI(base_url=base_url + "/v1", api_key="bench", http_client=http_client)
    semaphore = asyncio.Semaphore(concurrency)

    async def ask(prompt):
        async with semaphore:
            response = await client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": prompt}],
                max_tokens=max_tokens,
            )
            return response.choices[0].message.content

    async with client:
        return await asyncio.gather(*(ask(p) for p in prompts), return_exceptions=True)
