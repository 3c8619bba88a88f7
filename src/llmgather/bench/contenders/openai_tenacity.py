"""A semaphore plus tenacity's random exponential backoff: the usual tutorial pattern.

As in the OpenAI cookbook: `wait_random_exponential(min=1, max=60)`, `stop_after_attempt(6)`,
around a default `AsyncOpenAI` client.
"""

import asyncio

from openai import AsyncOpenAI
from tenacity import retry, stop_after_attempt, wait_random_exponential


async def main(prompts, *, base_url, max_tokens, concurrency=32, **_):
    client = AsyncOpenAI(base_url=base_url + "/v1", api_key="bench")
    semaphore = asyncio.Semaphore(concurrency)

    @retry(wait=wait_random_exponential(min=1, max=60), stop=stop_after_attempt(6))
    async def completion_with_backoff(**kwargs):
        return await client.chat.completions.create(**kwargs)

    async def ask(prompt):
        async with semaphore:
            response = await completion_with_backoff(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": prompt}],
                max_tokens=max_tokens,
            )
            return response.choices[0].message.content

    return await asyncio.gather(*(ask(p) for p in prompts), return_exceptions=True)
