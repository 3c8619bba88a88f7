"""llmgather for LangChain (`pip install 'llmgather[langchain]'`).

- `ChatLLMGather`: a LangChain chat model backed by a llmgather client (any provider, the
  shared token-aware limiter, one retry layer, `abatch` through the bounded pipeline).
- `LLMGatherRateLimiter`: LangChain's `BaseRateLimiter` over a llmgather limiter, so existing
  `ChatOpenAI`/`ChatAnthropic` objects spend from the same budget (requests only).
"""

from __future__ import annotations

try:
    import langchain_core  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on what is installed
    raise ImportError(
        "llmgather.langchain needs langchain-core: pip install 'llmgather[langchain]'"
    ) from exc

from llmgather.langchain.chat_model import ChatLLMGather
from llmgather.langchain.rate_limiter import LLMGatherRateLimiter

__all__ = ["ChatLLMGather", "LLMGatherRateLimiter"]
