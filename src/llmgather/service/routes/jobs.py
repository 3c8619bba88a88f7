"""Jobs over HTTP: the durable jobs of `llmgather run`, started, watched, read and cancelled.

POST   /v1/jobs               a JSONL body (prompt lines or OpenAI Batch lines), or a
                              multipart upload with a `file` field; `max_tokens`,
                              `temperature`, `system` as query (or form) parameters → 202;
                              413 past the service's `max_job_bytes`, as the body arrives
GET    /v1/jobs               {"object": "list", "data": [job, …]}, newest first
GET    /v1/jobs/{id}          one job: status, total, done, failed, created_at, finished_at
GET    /v1/jobs/{id}/results  the results JSONL finished so far (everything once done)
DELETE /v1/jobs/{id}          cancel: nothing more is sent; what finished is kept
"""

from __future__ import annotations

import asyncio
import math
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from starlette.datastructures import UploadFile
from starlette.responses import Response, StreamingResponse

from llmgather._prompt import TEMPERATURE_RULE, valid_temperature
from llmgather.service.dialects.openai import OpenAIFront
from llmgather.service.errors import ErrorAnswer, InvalidParam
from llmgather.service.gateway import error_response, json_response
from llmgather.service.job_manager import JobManager, NotCancellable, ServiceStopping
from llmgather.service.job_records import InvalidJobInput, JobParams, JobRecord
from llmgather.service.routes.bodies import BodyTooLarge, capped

router = APIRouter(tags=["jobs"])
FRONT = OpenAIFront()
JSONL_TYPES = frozenset(
    {"application/jsonl", "application/x-ndjson", "application/x-jsonlines", "application/json"}
)
# Types a JSONL body may come as without saying so (`curl --data-binary @prompts.jsonl` says
# application/x-www-form-urlencoded; other clients text/plain or nothing): taken if it parses
# as JSONL. Anything else is refused with what to send instead.
_LENIENT_TYPES = frozenset({"", "text/plain", "application/x-www-form-urlencoded"})
_WRITE_CHUNK_BYTES = 1 << 20
_PARAMS = ("max_tokens", "temperature", "system")  # a job's defaults for its lines
_EXPECTED = (
    "send the JSONL as the body (Content-Type: application/jsonl, application/x-ndjson or "
    "application/json), or as the `file` field of a multipart/form-data upload"
)


@router.post(
    "/v1/jobs",
    summary="Start a durable job from JSONL (prompt lines or OpenAI Batch lines)",
    status_code=202,
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "JSONL: one request per line, or a multipart upload with `file`",
            "content": {
                "application/jsonl": {"schema": {"type": "string"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                        "required": ["file"],
                    }
                },
            },
        }
    },
)
async def create_job(request: Request) -> Response:
    jobs: JobManager = request.app.state.jobs
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    try:
        # Refused as it arrives, before a body larger than the limit fills the disk.
        request = capped(request, request.app.state.settings.max_job_bytes)
        if kind == "multipart/form-data":
            return await _create_from_upload(jobs, request)
        if kind not in JSONL_TYPES and kind not in _LENIENT_TYPES:
            return _refuse(415, f"a body of type {kind} cannot be a job; {_EXPECTED}")
        params = _params(request.query_params)
        record = await jobs.create_job(_body_writer(request), params)
    except InvalidParam as error:
        return _refuse(422, str(error))
    except InvalidJobInput as error:
        return _refuse(400, str(error))
    except ServiceStopping as error:
        return _refuse(503, str(error))
    except BodyTooLarge as error:
        return _refuse(413, f"{error}: split the job, or raise llmgather serve's --max-job-mb")
    return _created(record)


async def _create_from_upload(jobs: JobManager, request: Request) -> Response:
    async with request.form() as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            return _refuse(400, f"the multipart upload has no `file` field; {_EXPECTED}")
        fields = {k: v for k, v in form.items() if k != "file"}
        files = sorted(k for k, v in fields.items() if not isinstance(v, str))
        if files:
            raise InvalidParam(
                f"the upload's field(s) {', '.join(files)} are files; only `file` may be one"
            )
        params = _params({**request.query_params, **fields})

        async def write(path: Path) -> None:
            await asyncio.to_thread(_copy, upload, path)

        record = await jobs.create_job(write, params)
    return _created(record)


@router.get("/v1/jobs", summary="Every job, newest first")
async def list_jobs(request: Request) -> Response:
    if refused := _no_query(request):
        return refused
    jobs: JobManager = request.app.state.jobs
    return json_response({"object": "list", "data": jobs.snapshot()})


@router.get("/v1/jobs/{id}", summary="One job's progress")
async def get_job(request: Request, id: str) -> Response:
    if refused := _no_query(request):
        return refused
    record = request.app.state.jobs.get(id)
    if record is None:
        return _unknown(id)
    return json_response(record.public())


@router.get("/v1/jobs/{id}/results", summary="The job's results JSONL, as finished so far")
async def job_results(request: Request, id: str) -> Response:
    if refused := _no_query(request):
        return refused
    jobs: JobManager = request.app.state.jobs
    record = jobs.get(id)
    if record is None:
        return _unknown(id)
    return StreamingResponse(jobs.results(record), media_type="application/jsonl")


@router.delete("/v1/jobs/{id}", summary="Cancel a job; what finished is kept")
async def cancel_job(request: Request, id: str) -> Response:
    if refused := _no_query(request):
        return refused
    jobs: JobManager = request.app.state.jobs
    record = jobs.get(id)
    if record is None:
        return _unknown(id)
    try:
        await jobs.cancel(record)
    except NotCancellable as error:
        return _refuse(409, str(error))
    return json_response(record.public())


def _body_writer(request: Request) -> Callable[[Path], Awaitable[None]]:
    """Writes the request's body to a file as it arrives, a megabyte at a time off the loop."""

    async def write(path: Path) -> None:
        with await asyncio.to_thread(open, path, "wb") as out:
            async for chunks in _gathered(request.stream()):
                await asyncio.to_thread(out.write, chunks)

    return write


async def _gathered(stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    buffered: list[bytes] = []
    size = 0
    async for chunk in stream:
        buffered.append(chunk)
        size += len(chunk)
        if size >= _WRITE_CHUNK_BYTES:
            yield b"".join(buffered)
            buffered, size = [], 0
    if buffered:
        yield b"".join(buffered)


def _copy(upload: UploadFile, path: Path) -> None:
    upload.file.seek(0)
    with open(path, "wb") as out:
        shutil.copyfileobj(upload.file, out, _WRITE_CHUNK_BYTES)


def _params(values: Mapping[str, Any]) -> JobParams:
    """The job's defaults from query (or form) parameters, each checked by name; a parameter
    of another name is refused (a misspelt `max_token` would otherwise be dropped unseen)."""
    unknown = sorted(name for name in values if name not in _PARAMS)
    if unknown:
        raise InvalidParam(
            f"unknown parameter(s) {', '.join(unknown)}; POST /v1/jobs takes "
            f"{', '.join(_PARAMS)} (as query parameters, or as form fields beside `file`)"
        )
    max_tokens = values.get("max_tokens")
    temperature = values.get("temperature")
    try:
        tokens = None if max_tokens in (None, "") else int(max_tokens)
    except ValueError:
        tokens = 0
    if tokens is not None and tokens < 1:
        raise InvalidParam(
            f"max_tokens must be a positive integer, such as 256; got {max_tokens!r}"
        )
    try:
        temp = None if temperature in (None, "") else float(temperature)
    except ValueError:
        temp = math.nan
    if temp is not None and not valid_temperature(temp):
        raise InvalidParam(
            f"temperature must be {TEMPERATURE_RULE}, such as 0.7; got {temperature!r}"
        )
    system = values.get("system") or None
    return JobParams(max_tokens=tokens, temperature=temp, system=system)


def _no_query(request: Request) -> Response | None:
    """A 422 naming the query parameters of a route that takes none, else None."""
    if not request.query_params:
        return None
    names = ", ".join(sorted(set(request.query_params)))
    route = f"{request.method} {request.url.path}"
    return _refuse(422, f"unknown query parameter(s) {names}: {route} takes none")


def _created(record: JobRecord) -> Response:
    response = json_response(record.public(), status=202)
    response.headers["location"] = f"/v1/jobs/{record.id}"
    return response


def _unknown(id: str) -> Response:
    return _refuse(404, f"no job with id {id!r}")


def _refuse(status: int, message: str) -> Response:
    return error_response(FRONT, ErrorAnswer(status, message))
