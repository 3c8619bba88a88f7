"""`GET /healthz` (the process answers) and `GET /readyz` (the upstream is ready to send)."""

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
    if getattr(state, "ready", False) and not getattr(state, "stopping", False):
        return json_response({"status": "ready"})
    return json_response({"status": "not ready"}, status=503)
