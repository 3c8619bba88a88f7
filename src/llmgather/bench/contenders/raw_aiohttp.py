"""The floor: N worker tasks posting JSON with one aiohttp session. Nothing is cheaper."""

import asyncio

import aiohttp


async def main(prompts, *, base_url, max_tokens, concurrency=256, **_):
    url = base_url + "/v1/chat/completions"
    headers = {"Authorization": "Bearer bench"}
    todo = iter(prompts)
    answers = []

    async def worker(session):
        for prompt in todo:
            body = {
                "model": "gpt-4o-mini",
                "max_tokens": max_tokens,
                "messages": [{"role": "user", "content": prompt}],
            }
            try:
                async with session.post(url, json=body, headers=headers) as response:
                    data = await response.json()
                    answers.append(
                        data["choices"][0]["message"]["content"] if response.status == 200 else None
                    )
            except aiohttp.ClientError as error:
                answers.append(error)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return answers
