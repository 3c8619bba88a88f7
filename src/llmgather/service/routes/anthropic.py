"""Anthropic's dialect: `POST /v1/messages` (plain and its named SSE events)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from llmgather.service.dialects.anthropic import AnthropicFront
from llmgather.service.errors import Refusal
from llmgather.service.gateway import Gateway, error_response
from llmgather.service.routes.bodies import JSONBody, read_json

router = APIRouter(tags=["gateway: Anthropic"])
FRONT = AnthropicFront()


@router.post(
    "/v1/messages",
    summary="Anthropic messages, under the shared limits",
    openapi_extra=JSONBody.openapi("An Anthropic Messages API request body"),
)
async def messages(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    body, data = await read_json(request)
    if data is None:
        return error_response(FRONT, Refusal(400, "the body must be a JSON object"))
    model = data.get("model")
    return await gateway.handle(
        FRONT,
        request,
        body=body,
        data=data,
        model=model if isinstance(model, str) and model else None,
        stream=data.get("stream") is True,
    )
