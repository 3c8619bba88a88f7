"""llmgather's library API: `Client.gather` (or `map`, in completion order), in any dialect."""

import llmgather
from llmgather.providers.registry import PROVIDERS


async def main(
    prompts,
    *,
    base_url,
    max_tokens,
    concurrency=100,
    rpm=None,
    tpm=None,
    use_map=False,
    model="openai:gpt-4o-mini",
    **_,
):
    suffix = PROVIDERS[model.split(":", 1)[0]].base_url_suffix
    async with llmgather.Client(
        model,
        base_url=base_url + suffix,
        api_key="bench",
        concurrency=concurrency,
        rpm=rpm,
        tpm=tpm,
        defaults={"max_tokens": max_tokens},
    ) as client:
        if use_map:
            return [result async for result in client.map(prompts)]
        return await client.gather(prompts)
