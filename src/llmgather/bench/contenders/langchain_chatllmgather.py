"""LangChain `abatch` with `ChatLLMGather`: the same LangChain call as `langchain_abatch`, with
llmgather's model underneath (told the limits, paced by its limiter, bounded pipeline)."""

from llmgather.langchain import ChatLLMGather


async def main(prompts, *, base_url, max_tokens, concurrency=100, rpm=None, tpm=None, **_):
    llm = ChatLLMGather(
        model="openai:gpt-4o-mini",
        base_url=base_url + "/v1",
        api_key="bench",
        max_tokens=max_tokens,
        concurrency=concurrency,
        rpm=rpm,
        tpm=tpm,
    )
    try:
        messages = await llm.abatch(prompts, return_exceptions=True)
    finally:
        await llm.aclose()
    return [m if isinstance(m, BaseException) else m.content for m in messages]
