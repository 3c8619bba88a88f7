"""What the coordinator and the workers agree on: the keys of a queue, a task's and a result's
fields on the wire, the consumer group, riding out a Redis restart."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar

import orjson

from llmgather._redis import retried
from llmgather._types import ErrorInfo, Request, Result, ToolCall, Usage

T = TypeVar("T")

GROUP = "workers"
# Long enough for Redis to restart under a supervisor; a worker or coordinator then goes on.
RECONNECT_ATTEMPTS = 10  # waits of 0.1, 0.2 … 2 s: about 13 s in all
READ_BLOCK_MS = 500


def queue_keys(name: str) -> tuple[str, str]:
    """The key prefix of a queue and its task stream."""
    prefix = f"llmgather:q:{{{name}}}"
    return prefix, f"{prefix}:tasks"


async def call_retried(url: str, step: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """`step(*args, **kwargs)`, retried while Redis at `url` restarts."""
    return await retried(lambda: step(*args, **kwargs), url, attempts=RECONNECT_ATTEMPTS)


async def ensure_group(redis_client: Any, tasks: str) -> None:
    import redis.exceptions

    try:
        await redis_client.xgroup_create(tasks, GROUP, id="0", mkstream=True)
    except redis.exceptions.ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


def request_to_wire(request: Request) -> bytes:
    return orjson.dumps(
        {
            "messages": list(request.messages),
            "model": request.model,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "metadata": request.metadata,
            "extra": request.extra,
            "tools": request.tools,
            "tool_choice": request.tool_choice,
            "json_schema": request.json_schema,
        }
    )


def request_from_wire(data: bytes, *, id: str) -> Request:
    fields = orjson.loads(data)
    return Request(
        messages=tuple(fields["messages"]),
        id=id,
        model=fields["model"],
        max_tokens=fields["max_tokens"],
        temperature=fields["temperature"],
        metadata=fields["metadata"],
        extra=fields["extra"],
        # .get: a task written by a worker of a version before tools still reads
        tools=tuple(fields["tools"]) if fields.get("tools") else None,
        tool_choice=fields.get("tool_choice"),
        json_schema=fields.get("json_schema"),
    )


def result_to_wire(result: Result) -> bytes:
    fields = result.to_dict()
    fields["latency_ms"] = result.latency_ms  # unrounded: the coordinator rounds as it writes
    fields["ttft_ms"] = result.ttft_ms
    return orjson.dumps(fields)


def result_from_wire(data: bytes, *, id: str) -> Result:
    fields = orjson.loads(data)
    usage = fields["usage"]
    error = fields["error"]
    return Result(
        id=id,
        status=fields["status"],
        text=fields["text"],
        usage=Usage.from_dict(usage) if usage else None,
        attempts=fields["attempts"],
        latency_ms=fields["latency_ms"],
        ttft_ms=fields["ttft_ms"],
        error=ErrorInfo(error["type"], error["message"], error["status_code"]) if error else None,
        metadata=fields["metadata"],
        finish_reason=fields["finish_reason"],
        provider_finish_reason=fields["provider_finish_reason"],
        tool_calls=tuple(ToolCall.from_dict(call) for call in fields.get("tool_calls") or ()),
        # .get: a worker of a version before prices sends none; its shortest text is exact
        cost=None if fields.get("cost") is None else Decimal(repr(fields["cost"])),
        cost_basis=fields.get("cost_basis"),
    )


def decode(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
