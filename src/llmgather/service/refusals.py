"""The service's own error shape for what FastAPI and Starlette would otherwise answer in
theirs (`{"detail": "Not Found"}`): an unknown route, a method a route does not take, a
parameter FastAPI itself found wrong. Every error of the service reads alike (OpenAI's
shape, as `/generate` and `/v1/jobs` answer), and says what to do.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from llmgather.service.dialects.openai import OpenAIFront
from llmgather.service.errors import ErrorAnswer
from llmgather.service.gateway import error_response

FRONT = OpenAIFront()


def answer_in_our_shape(app: FastAPI) -> None:
    """Installs the handlers on `app`."""
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_param)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    method, path = request.method, request.url.path
    if exc.status_code == 404:
        message = f"no route {method} {path}; the service's routes are listed at /docs"
    elif exc.status_code == 405:
        headers = {name.lower(): value for name, value in (exc.headers or {}).items()}
        allowed = headers.get("allow", "")
        message = f"{path} does not take {method}" + (f"; it takes {allowed}" if allowed else "")
    else:
        message = str(exc.detail)
    response = error_response(FRONT, ErrorAnswer(exc.status_code, message))
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


async def _invalid_param(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(_problem(error) for error in exc.errors()) or "invalid request"
    return error_response(FRONT, ErrorAnswer(422, problems))


def _problem(error: Any) -> str:
    where = ".".join(str(part) for part in error.get("loc", ()))
    return f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg"))
