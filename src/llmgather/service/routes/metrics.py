"""`GET /metrics`: the service's Prometheus metrics (see `service.metrics`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    summary="Prometheus metrics: requests, queue, upstream calls, tokens, limits",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    # On the event loop (an async route), like the queue, engine and limiter it reads.
    body = generate_latest(request.app.state.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
