"""llmgather's library API: `Client.gather` (or `map`, in completion order), in any dialect."""

import llmgather

MODELS = {
    "openai": "openai:gpt-4o-mini",
    "gemini": "gemini:gemini-2.0-flash",
    "anthropic": "anthropic:claude-3-5-haiku-latest",
}


async def main(
    prompts,
    *,
    base_url,
    max_tokens,
    concurrency=100,
    rpm=None,
    tpm=None,
    use_map=False,
    provider="openai",
    **_,
):
    async with llmgather.Client(
        MODELS[provider],
        base_url=base_url + "/v1" if provider == "openai" else base_url,
        api_key="bench",
        concurrency=concurrency,
        rpm=rpm,
        tpm=tpm,
        defaults={"max_tokens": max_tokens},
    ) as client:
        if use_map:
            return [result async for result in client.map(prompts)]
        return await client.gather(prompts)
