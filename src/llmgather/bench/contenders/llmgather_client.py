"""llmgather's library API: `Client.gather` (or `map`, in completion order)."""

import llmgather


async def main(
    prompts, *, base_url, max_tokens, concurrency=100, rpm=None, tpm=None, use_map=False, **_
):
    async with llmgather.Client(
        "openai:gpt-4o-mini",
        base_url=base_url + "/v1",
        api_key="bench",
        concurrency=concurrency,
        rpm=rpm,
        tpm=tpm,
        defaults={"max_tokens": max_tokens},
    ) as client:
        if use_map:
            return [result async for result in client.map(prompts)]
        return await client.gather(prompts)
