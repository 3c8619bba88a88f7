"""`asyncio.gather` over every prompt with `AsyncOpenAI`: no cap, no retries."""

import asyncio

from openai import AsyncOpenAI


async def main(prompts, *, base_url, max_tokens, retries=0, **_):
    client = AsyncOpenAI(base_url=base_url + "/v1", api_key="bench", max_retries=retries)

    async def ask(prompt):
        response = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": prompt}],
            max_tokens=max_tokens,
        )
        return response.choices[0].message.content

    return await asyncio.gather(*(ask(p) for p in prompts), return_exceptions=True)
