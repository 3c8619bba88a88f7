"""Anthropic's dialect: `POST /v1/messages` (plain and its named SSE events)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from llmgather.service.dialects.anthropic import AnthropicFront
from llmgather.service.fastpath import hot
from llmgather.service.gateway import Gateway
from llmgather.service.routes.bodies import JSONBody

router = APIRouter(tags=["gateway: Anthropic"])
FRONT = AnthropicFront()


@router.post(
    "/v1/messages",
    summary="Anthropic messages, under the shared limits",
    openapi_extra=JSONBody.openapi("An Anthropic Messages API request body"),
)
@hot
async def messages(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    return await gateway.serve(FRONT, request)
