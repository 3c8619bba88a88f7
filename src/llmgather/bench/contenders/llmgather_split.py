"""llmgather told Anthropic's separate input and output token limits: `Client.gather` over
the Anthropic dialect, reporting the usage the server answered with."""

import llmgather


async def main(prompts, *, base_url, max_tokens, itpm, otpm, concurrency=64, **_):
    async with llmgather.Client(
        "anthropic:claude-3-5-haiku-latest",
        base_url=base_url,
        api_key="sim",
        itpm=itpm,
        otpm=otpm,
        concurrency=concurrency,
        defaults={"max_tokens": max_tokens},
    ) as client:
        results = await client.gather(prompts)
    used = [r.usage for r in results if r.usage is not None]
    return {
        "results": results,
        "input_tokens": sum(u.input_tokens for u in used),
        "output_tokens": sum(u.output_tokens for u in used),
    }
