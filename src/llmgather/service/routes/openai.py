"""OpenAI's dialect: `POST /v1/chat/completions` (plain and SSE) and `GET /v1/models`."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from llmgather.service.dialects.openai import OpenAIFront
from llmgather.service.errors import Refusal
from llmgather.service.gateway import Gateway, error_response, json_response
from llmgather.service.routes.bodies import JSONBody, read_json

router = APIRouter(tags=["gateway: OpenAI"])
FRONT = OpenAIFront()


@router.post(
    "/v1/chat/completions",
    summary="OpenAI chat completions, under the shared limits",
    openapi_extra=JSONBody.openapi("An OpenAI chat completions request body"),
)
async def chat_completions(request: Request) -> Response:
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
