"""Plain `asyncio.gather` over a JSONL file: read every line, gather every request (with a
semaphore and one aiohttp session), then write every result."""

import asyncio
import json

import aiohttp


async def main(*, base_url, input_path, output_path, max_tokens, concurrency=256, **_):
    with open(input_path) as f:  # noqa: ASYNC230  (as users write it)
        prompts = [json.loads(line)["prompt"] for line in f]
    url = base_url + "/v1/chat/completions"
    headers = {"Authorization": "Bearer bench"}
    semaphore = asyncio.Semaphore(concurrency)

    async def ask(session, prompt):
        body = {
            "model": "gpt-4o-mini",
            "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": prompt}],
        }
        async with semaphore:
            async with session.post(url, json=body, headers=headers) as response:
                data = await response.json()
                return data["choices"][0]["message"]["content"]

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        results = await asyncio.gather(*(ask(session, p) for p in prompts), return_exceptions=True)
    with open(output_path, "w") as out:  # noqa: ASYNC230
        for prompt, result in zip(prompts, results, strict=True):
            text = None if isinstance(result, BaseException) else result
            out.write(json.dumps({"prompt": prompt, "text": text}) + "\n")
    return results
