"""Gemini's dialect: `POST /v1beta/models/{model}:generateContent` and
`:streamGenerateContent?alt=sse` (the SSE form the google-genai SDK asks for), and the same
under `/v1/` (which google-genai 3 uses by default).

The model is the path's, as in the API: a relay sends the body to that model upstream.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from llmgather.service.dialects.gemini import GeminiFront
from llmgather.service.errors import ErrorAnswer
from llmgather.service.fastpath import hot
from llmgather.service.gateway import Gateway, error_response
from llmgather.service.routes.bodies import JSONBody

router = APIRouter(tags=["gateway: Gemini"])
FRONT = GeminiFront()


@router.post(
    "/v1beta/models/{model}:generateContent",
    summary="Gemini generateContent, under the shared limits",
    openapi_extra=JSONBody.openapi("A Gemini GenerateContentRequest body"),
)
@router.post(
    "/v1/models/{model}:generateContent",
    summary="Gemini generateContent (API version v1), under the shared limits",
    openapi_extra=JSONBody.openapi("A Gemini GenerateContentRequest body"),
)
@hot
async def generate_content(request: Request, model: str) -> Response:
    return await _handle(request, model, stream=False)


@router.post(
    "/v1beta/models/{model}:streamGenerateContent",
    summary="Gemini streamGenerateContent (alt=sse), under the shared limits",
    openapi_extra=JSONBody.openapi("A Gemini GenerateContentRequest body"),
)
@router.post(
    "/v1/models/{model}:streamGenerateContent",
    summary="Gemini streamGenerateContent (alt=sse, API version v1), under the shared limits",
    openapi_extra=JSONBody.openapi("A Gemini GenerateContentRequest body"),
)
@hot
async def stream_generate_content(request: Request, model: str) -> Response:
    if request.query_params.get("alt") != "sse":
        # Without alt=sse the API streams one JSON array, which this gateway does not write.
        message = "alt: only server-sent events are served here; add ?alt=sse to the URL"
        return error_response(FRONT, ErrorAnswer(400, message))
    return await _handle(request, model, stream=True)


async def _handle(request: Request, model: str, *, stream: bool) -> Response:
    gateway: Gateway = request.app.state.gateway
    return await gateway.serve(FRONT, request, model=model or None, stream=stream)
