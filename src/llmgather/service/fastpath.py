"""The gateway's routes served straight to their handlers, past FastAPI's per-request layers.

FastAPI's and Starlette's layers (exception and body-limit middleware, route matching over
every router, dependency solving, query parsing) run before every handler, and cost the
gateway a large share of its CPU per request (BENCHMARKS.md, gateway); its handlers need none
of it: they read their raw body and answer a ready Response. So this thin ASGI layer matches the routes marked `@hot` and calls their
handlers itself, recording the same metrics; everything else goes to FastAPI. The hot routes
stay registered in FastAPI too, so `/docs` and the OpenAPI schema describe them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match

from llmgather.service.metrics import RequestMetrics, ServiceMetrics

logger = logging.getLogger("llmgather.service")

Endpoint = TypeVar("Endpoint", bound=Callable[..., Awaitable[Response]])


def hot(endpoint: Endpoint) -> Endpoint:
    """Mark a route's handler as served by `HotRoutes`: it takes the Request and the path's
    parameters, reads its own body and returns a Response."""
    endpoint.hot = True  # type: ignore[attr-defined]
    return endpoint


class HotRoutes:
    """Serves the `@hot` routes of `routers` (included in `app` without a prefix)."""

    def __init__(self, app: FastAPI, metrics: ServiceMetrics, routers: list[APIRouter]) -> None:
        self.app = app
        self.state = app.state
        self._timed = RequestMetrics(self._serve, metrics)
        self._routes = [
            route
            for router in routers
            for route in router.routes
            if isinstance(route, APIRoute) and getattr(route.endpoint, "hot", False)
        ]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            for route in self._routes:
                match, child = route.matches(scope)
                if match is Match.FULL:
                    # `route` in the scope names it to the metrics layer, as FastAPI's router does.
                    served = {**scope, **child, "app": self.app, "route": route}
                    await self._timed(served, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _serve(self, scope: Any, receive: Any, send: Any) -> None:
        route: APIRoute = scope["route"]
        try:
            response = await route.endpoint(Request(scope, receive), **scope["path_params"])
        except Exception:
            logger.exception("llmgather serve: %s failed", route.path)
            response = Response(
                orjson.dumps({"error": {"message": "Internal Server Error"}}),
                status_code=500,
                media_type="application/json",
            )
        await response(scope, receive, send)
