"""Batches of 10 with `AsyncOpenAI`: gather one batch, then the next."""

import asyncio

from openai import AsyncOpenAI


async def main(prompts, *, base_url, max_tokens, batch_size=10, **_):
    client = AsyncOpenAI(base_url=base_url + "/v1", api_key="bench")

    async def ask(prompt):
        response = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": prompt}],
            max_tokens=max_tokens,
        )
        return response.choices[0].message.content

    answers = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        answers += await asyncio.gather(*(ask(p) for p in batch), return_exceptions=True)
    return answers
