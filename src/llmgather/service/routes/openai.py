"""OpenAI's dialect: `POST /v1/chat/completions` (plain and SSE) and `GET /v1/models`."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from llmgather.service.dialects.openai import OpenAIFront
from llmgather.service.fastpath import hot
from llmgather.service.gateway import Gateway, json_response
from llmgather.service.routes.bodies import JSONBody

router = APIRouter(tags=["gateway: OpenAI"])
FRONT = OpenAIFront()


@router.post(
    "/v1/chat/completions",
    summary="OpenAI chat completions, under the shared limits",
    openapi_extra=JSONBody.openapi("An OpenAI chat completions request body"),
)
@hot
async def chat_completions(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    return await gateway.serve(FRONT, request)


@router.get("/v1/models", summary="The model this gateway serves")
async def models(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    model: dict[str, Any] = {
        "id": gateway.upstream.model,
        "object": "model",
        "created": int(time.time()),
        "owned_by": gateway.upstream.target.provider,
    }
    return json_response({"object": "list", "data": [model]})
