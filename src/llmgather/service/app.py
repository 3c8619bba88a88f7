"""The FastAPI application: one upstream (engine, shared limiter, pooled transport) for every
route, started and stopped with the app.

    create_app(ServiceSettings(model="openai:gpt-4o-mini", limits=Limits(rpm=500)))
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from llmgather import __version__
from llmgather.service.auth import BearerAuth
from llmgather.service.dashboard.feed import DashboardFeed
from llmgather.service.fastpath import HotRoutes
from llmgather.service.gateway import Gateway
from llmgather.service.job_manager import JobManager
from llmgather.service.keycheck import KeyRecheck
from llmgather.service.metrics import RequestMetrics, ServiceMetrics
from llmgather.service.queueing import GatewayQueue
from llmgather.service.refusals import answer_in_our_shape
from llmgather.service.routes import (
    anthropic,
    dashboard,
    docs,
    gemini,
    generate,
    health,
    jobs,
    metrics,
    openai,
)
from llmgather.service.settings import ServiceSettings
from llmgather.service.upstream import Upstream

logger = logging.getLogger("llmgather.service")


def create_app(settings: ServiceSettings, *, env: Mapping[str, str] | None = None) -> Any:
    """The service as an ASGI app: FastAPI behind the gateway's hot routes (`fastpath`),
    behind bearer auth when `settings.token` is set; its `state` is the FastAPI app's.
    Resolves the upstream at once, so a wrong model or a missing key fails before serving."""
    upstream = Upstream(settings, env=env)
    job_manager = JobManager(
        upstream,
        settings.jobs_dir,
        retention_s=settings.retention_s,
        retention_max=settings.retention_max,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await upstream.start()
            await job_manager.start()
            async with asyncio.TaskGroup() as chores:
                # The app's own tasks, for as long as it serves: neither ends by itself.
                running = [
                    chores.create_task(job_manager.retention.run(), name="llmgather-retention"),
                    chores.create_task(
                        KeyRecheck(upstream, first_s=settings.key_recheck_s).run(),
                        name="llmgather-key-recheck",
                    ),
                ]
                app.state.ready = True
                try:
                    yield
                finally:
                    for task in running:
                        task.cancel()
        finally:
            app.state.stopping = True
            try:
                await job_manager.aclose()  # in-flight requests finish; queued jobs stay on disk
            finally:
                await upstream.aclose()

    app = FastAPI(
        title="llmgather",
        version=__version__,
        summary="A rate-limit-aware gateway: requests wait for the shared limits instead of failing.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's page loads Swagger UI from a CDN; `routes.docs` serves it
        redoc_url=None,  # likewise, and one page of docs is enough
    )
    app.state.settings = settings
    app.state.upstream = upstream
    app.state.jobs = job_manager
    app.state.gateway = Gateway(upstream, GatewayQueue(upstream.limiter, settings.queue_timeout_s))
    app.state.ready = False
    app.state.stopping = False
    app.state.metrics = ServiceMetrics(app.state)
    app.state.dashboard = DashboardFeed(app.state)
    app.add_middleware(RequestMetrics, metrics=app.state.metrics)
    answer_in_our_shape(app)
    routers = [
        module.router
        for module in (health, openai, anthropic, gemini, metrics, dashboard, docs, generate, jobs)
    ]
    for router in routers:
        app.include_router(router)
    served: Any = HotRoutes(app, app.state.metrics, routers)
    if settings.token:
        served = BearerAuth(served, settings.token)
    return served
