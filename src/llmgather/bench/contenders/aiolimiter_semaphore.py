"""`aiolimiter` for requests and tokens per minute, plus a semaphore, around `AsyncOpenAI`.

Tokens are estimated the usual way (4 characters a token, plus max_tokens); the SDK's default
retries handle the 429s the limiters let through.
"""

import asyncio

from aiolimiter import AsyncLimiter
from openai import AsyncOpenAI


async def main(prompts, *, base_url, max_tokens, rpm, tpm, concurrency=32, **_):
    client = AsyncOpenAI(base_url=base_url + "/v1", api_key="bench")
    requests_per_minute = AsyncLimiter(rpm, 60)
    tokens_per_minute = AsyncLimiter(tpm, 60)
    semaphore = asyncio.Semaphore(concurrency)

    async def ask(prompt):
        async with semaphore:
            await requests_per_minute.acquire()
            await tokens_per_minute.acquire(len(prompt) // 4 + max_tokens)
            response = await client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": prompt}],
                max_tokens=max_tokens,
            )
            return response.choices[0].message.content

    return await asyncio.gather(*(ask(p) for p in prompts), return_exceptions=True)
