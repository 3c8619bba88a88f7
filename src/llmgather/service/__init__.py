"""`llmgather serve`: a FastAPI service over the one engine — `/generate`, a gateway in the
OpenAI, Anthropic and Gemini dialects that queues for the shared limits instead of failing,
jobs over HTTP, `/metrics` and a dashboard. Needs the `serve` extra."""

from llmgather.service.app import create_app
from llmgather.service.settings import ServiceSettings

__all__ = ["ServiceSettings", "create_app"]
