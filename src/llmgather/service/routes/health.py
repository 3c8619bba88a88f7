"""`GET /healthz` (the process answers) and `GET /readyz` (it can send upstream: started, not
stopping, its key not refused)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from llmgather.service.gateway import json_response

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The service is up")
async def healthz() -> Response:
    return json_response({"status": "ok"})


@router.get("/readyz", summary="The service is ready to send upstream")
async def readyz(request: Request) -> Response:
    state = request.app.state
    if not state.ready or state.stopping:
        return json_response({"status": "not ready"}, status=503)
    if state.upstream.engine.key_refused:
        # Every request fails unsent until a recheck finds the key accepted (`keycheck`).
        reason = "the upstream refused the service's API key (asked again now and then)"
        return json_response({"status": "not ready", "reason": reason}, status=503)
    return json_response({"status": "ready"})
