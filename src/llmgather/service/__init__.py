"""`llmgather serve`: a FastAPI service over the one engine — `/generate`, a gateway in the
OpenAI, Anthropic and Gemini dialects that queues for the shared limits instead of failing,
jobs over HTTP, `/metrics` and a dashboard. Needs the `serve` extra."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmgather.service.app import create_app
    from llmgather.service.settings import ServiceSettings

__all__ = ["ServiceSettings", "create_app"]


def __getattr__(name: str) -> Any:
    # Imported when first asked for: the CLI reads the settings module's defaults without
    # the serve extra (FastAPI, uvicorn) installed or loaded.
    if name == "create_app":
        from llmgather.service.app import create_app

        return create_app
    if name == "ServiceSettings":
        from llmgather.service.settings import ServiceSettings

        return ServiceSettings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
