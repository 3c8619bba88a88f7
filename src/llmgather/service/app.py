"""The FastAPI application: one upstream (engine, shared limiter, pooled transport) for every
route, started and stopped with the app.

    create_app(ServiceSettings(model="openai:gpt-4o-mini", limits=Limits(rpm=500)))
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from llmgather import __version__
from llmgather.service.auth import BearerAuth
from llmgather.service.gateway import Gateway
from llmgather.service.queueing import GatewayQueue
from llmgather.service.routes import health, openai
from llmgather.service.settings import ServiceSettings
from llmgather.service.upstream import Upstream

logger = logging.getLogger("llmgather.service")


def create_app(settings: ServiceSettings, *, env: Mapping[str, str] | None = None) -> Any:
    """The service as an ASGI app (wrapped in bearer auth when `settings.token` is set).
    Resolves the upstream at once, so a wrong model or a missing key fails before serving."""
    upstream = Upstream(settings, env=env)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await upstream.start()
        app.state.ready = True
        try:
            yield
        finally:
            app.state.stopping = True
            await upstream.aclose()

    app = FastAPI(
        title="llmgather",
        version=__version__,
        summary="A rate-limit-aware gateway: requests wait for the shared limits instead of failing.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.upstream = upstream
    app.state.gateway = Gateway(upstream, GatewayQueue(upstream.limiter, settings.queue_timeout_s))
    app.state.ready = False
    app.state.stopping = False
    for module in (health, openai):
        app.include_router(module.router)
    if settings.token:
        return BearerAuth(app, settings.token)
    return app
