"""The response cache in front of the service's calls: `/generate` and the gateway's routes
send bodies already in the upstream's dialect (`CallRequest`s the engine cannot look into),
so they are keyed here, by the body as sent, before the queue's call reaches the engine.

    body ─▶ key ─ hit ─▶ Result(cached=True, cost 0; `value`: the answer as first relayed)
               └ miss ─▶ engine ─▶ ok, clean finish ─▶ kept (with the raw answer when relayed)

Only whole answers are cached: a streamed call goes upstream every time.
"""

from __future__ import annotations

import orjson

from llmgather._attempt import from_cache
from llmgather._types import Completion, Result
from llmgather.cache import ResponseCache, endpoint_of, request_key
from llmgather.transport import HttpRequest, HttpResponse

__all__ = ["ServiceCache"]


class ServiceCache:
    """`cache`, keyed for the upstream `provider` (its name), `simulated` or not."""

    def __init__(self, cache: ResponseCache, *, provider: str, simulated: bool) -> None:
        self.cache = cache
        self._provider = provider
        self._simulated = simulated

    def key(self, http: HttpRequest) -> str | None:
        """The key of a whole-answer call, or None when the cache may not answer it."""
        try:
            body = orjson.loads(http.body)
        except orjson.JSONDecodeError:
            return None  # the upstream will say what is wrong with it
        if not isinstance(body, dict) or not self.cache.admits(body):
            return None
        endpoint = endpoint_of(http.url, simulated=self._simulated)
        return request_key(self._provider, endpoint, body)

    async def look_up(self, key: str, *, relay: bool) -> Result | None:
        raw: bytes | None = None
        if relay:
            found = await self.cache.look_up_relayed(key)
            if found is None:
                return None
            completion, raw = found
        elif (hit := await self.cache.look_up(key)) is None:
            return None
        else:
            completion = hit
        return from_cache(
            completion, id="", value=None if raw is None else HttpResponse(200, {}, raw)
        )

    async def keep(self, key: str, result: Result, *, relay: bool) -> None:
        if not result.ok:
            return
        completion = Completion(
            text=result.text or "",
            usage=result.usage,
            finish_reason=result.finish_reason,
            provider_finish_reason=result.provider_finish_reason,
            tool_calls=result.tool_calls,
        )
        raw = result.value.body if relay and isinstance(result.value, HttpResponse) else None
        await self.cache.keep(key, completion, raw)
