"""Summaries of many texts through a LangChain chain (prompt | chat model | parser), concurrently.

The async-chain workflow of the guide, with `ChatLLMGather` as the chat model: `abatch` goes
through llmgather's bounded pipeline, paced by its limiter, so the provider's 429s never reach
the chain. With no API key in the environment it runs on the built-in simulator.

    python examples/langchain_pipeline.py [COUNT]
"""

from __future__ import annotations

import asyncio
import sys
import time

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from llmgather.langchain import ChatLLMGather
from llmgather.sim import SimConfig

TOPICS = ("bird migration", "tides", "volcanoes", "bread baking", "comets", "coral reefs")


async def main(count: int) -> None:
    texts = [f"Text {i}: a few paragraphs about {TOPICS[i % len(TOPICS)]}." for i in range(count)]
    prompt = ChatPromptTemplate.from_messages(
        [
            ("system", "You summarise texts in one sentence."),
            ("human", "Summarise this text:\n\n{text}"),
        ]
    )
    # The simulator (when no key is set) enforces 1,200 RPM; the model is told the same.
    chat = ChatLLMGather(
        model="gpt-4o-mini",
        rpm=1200,
        max_tokens=60,
        simulator=SimConfig(rpm=1200, latency_ms=100),
    )
    chain = prompt | chat | StrOutputParser()
    started = time.perf_counter()
    try:
        summaries = await chain.abatch([{"text": text} for text in texts])
    finally:
        await chat.aclose()
    elapsed = time.perf_counter() - started
    for text, summary in list(zip(texts, summaries, strict=True))[:3]:
        print(f"{text}\n  → {summary}")
    print(f"{len(summaries)} summaries in {elapsed:.1f} s")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100))
