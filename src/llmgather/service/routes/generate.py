"""`POST /generate`: one prompt in, its answer out, under the shared limits; with
`"background": true`, a durable job answered 202 at once and read later at `GET /generate/{id}`.

    POST /generate {"prompt": "Why?", "max_tokens": 64}
        200 {"text": "...", "usage": {...}, "attempts": 1, "latency_ms": 812.4}
    POST /generate {"prompt": "Why?", "background": true}
        202 {"id": "gen_…", "status": "queued"}       (kept on disk: it survives a restart)
    GET /generate/gen_…
        202 {"id": …, "status": "queued" | "running"} until it is done, then
        200 {"id": …, "status": "done", "text": …, "usage": …, "attempts": …, "latency_ms": …}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from llmgather._prompt import TEMPERATURE_RULE, valid_temperature
from llmgather._types import cost_number
from llmgather.limits.tokens import request_cost
from llmgather.service.dialects.openai import OpenAIFront
from llmgather.service.errors import ErrorAnswer, InvalidParam, error_answer_for
from llmgather.service.gateway import (
    Gateway,
    error_response,
    json_response,
    queue_full_response,
)
from llmgather.service.job_manager import JobManager, ServiceStopping
from llmgather.service.job_records import JobParams
from llmgather.service.queueing import ClientGone, QueueFull
from llmgather.service.routes.bodies import BodyTooLarge, JSONBody, NotAnObject, read_json

router = APIRouter(tags=["generate"])
FRONT = OpenAIFront()  # errors in OpenAI's shape, as the rest of the service words them
_FIELDS = ("prompt", "max_tokens", "temperature", "system", "background")
_EXAMPLE = '{"prompt": "Why do some birds migrate?", "max_tokens": 256}'


@dataclass(frozen=True, slots=True)
class Ask:
    prompt: str
    params: JobParams
    background: bool

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Ask:
        unknown = sorted(key for key in data if key not in _FIELDS)
        if unknown:
            raise InvalidParam(
                f"unknown field(s) {', '.join(unknown)}; /generate takes {', '.join(_FIELDS)}"
            )
        prompt = data.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidParam(f'field "prompt" must be a non-empty string, such as {_EXAMPLE}')
        max_tokens = data.get("max_tokens")
        if max_tokens is not None and (
            not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1
        ):
            raise InvalidParam('field "max_tokens" must be a positive integer, such as 256')
        temperature = data.get("temperature")
        if temperature is not None and not valid_temperature(temperature):
            raise InvalidParam(f'field "temperature" must be {TEMPERATURE_RULE}, such as 0.7')
        system = data.get("system")
        if system is not None and not isinstance(system, str):
            raise InvalidParam('field "system" must be a string (the system prompt)')
        background = data.get("background", False)
        if not isinstance(background, bool):
            raise InvalidParam('field "background" must be true or false')
        params = JobParams(
            max_tokens=max_tokens,
            temperature=None if temperature is None else float(temperature),
            system=system,
        )
        return cls(prompt, params, background)


@router.post(
    "/generate",
    summary="One prompt's answer, under the shared limits (or in the background, durably)",
    openapi_extra=JSONBody.openapi(
        '{"prompt", "max_tokens"?, "temperature"?, "system"?, "background"?}'
    ),
)
async def generate(request: Request) -> Response:
    try:
        _, data = await read_json(request)
    except BodyTooLarge as error:
        return _refuse(413, str(error))
    except NotAnObject as error:
        return _refuse(400, f"{error} (/generate takes one such as {_EXAMPLE})")
    try:
        ask = Ask.parse(data)
    except InvalidParam as error:
        return _refuse(422, str(error))
    if ask.background:
        return await _in_background(request.app.state.jobs, ask)
    gateway: Gateway = request.app.state.gateway
    params = ask.params
    prompt = gateway.upstream.prompted(
        ask.prompt,
        max_tokens=params.max_tokens,
        temperature=params.temperature,
        system=params.system,
    )
    http = gateway.upstream.translated(prompt, stream=False)
    # The served model, which a capped service was refused to start without a price for.
    cost = gateway.upstream.capped(request_cost(prompt.messages, prompt.max_tokens), http)
    try:
        # The gateway's path: the queue's bound, withdrawn if the client leaves while queued.
        result = await gateway.call(request, http, cost, relay=False)
    except QueueFull as error:
        return queue_full_response(FRONT, error)
    except ClientGone:
        return Response(status_code=499)
    if not result.ok:
        assert result.exception is not None
        return error_response(FRONT, error_answer_for(result.exception))
    return json_response(
        {
            "text": gateway.upstream.redactor.known(result.text or ""),
            "usage": result.usage.to_dict() if result.usage else None,
            "cost": cost_number(result.cost),
            "cost_basis": result.cost_basis,
            "attempts": result.attempts,
            "latency_ms": None if result.latency_ms is None else round(result.latency_ms, 1),
        }
    )


async def _in_background(jobs: JobManager, ask: Ask) -> Response:
    try:
        record = await jobs.submit_generation(ask.prompt, ask.params)
    except ServiceStopping as error:
        return _refuse(503, str(error))
    response = json_response({"id": record.id, "status": record.status}, status=202)
    response.headers["location"] = f"/generate/{record.id}"
    return response


@router.get("/generate/{id}", summary="A background /generate: its answer once it is done")
async def generation(request: Request, id: str) -> Response:
    jobs: JobManager = request.app.state.jobs
    record = jobs.generation(id)
    if record is None:
        return _unknown(request, id)
    if record.status == "failed":
        return _refuse(500, f"the background /generate {id} failed: {record.error}")
    if record.status != "done":
        return json_response({"id": id, "status": record.status}, status=202)
    line = await jobs.generation_result(record)
    if line is None and jobs.generation(id) is None:  # removed while it was read
        return _unknown(request, id)
    if line is None:  # done, so its one line is there, unless its folder was tampered with
        return _refuse(500, f"the answer of {id} is missing from its results")
    answer = {
        "id": id,
        "status": "done" if line.get("status") == "ok" else "failed",
        "text": line.get("text"),
        "usage": line.get("usage"),
        "cost": line.get("cost"),
        "cost_basis": line.get("cost_basis"),
        "attempts": line.get("attempts"),
        "latency_ms": line.get("latency_ms"),
    }
    if line.get("error"):
        answer["error"] = line["error"]
    return json_response(answer)


def _unknown(request: Request, id: str) -> Response:
    hours = request.app.state.settings.retention_s / 3600
    message = (
        f"no background /generate with id {id!r} (a finished one is kept for {hours:g} h, "
        "llmgather serve's --retention)"
    )
    return _refuse(404, message)


def _refuse(status: int, message: str) -> Response:
    return error_response(FRONT, ErrorAnswer(status, message))
