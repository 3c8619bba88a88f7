"""Recovering from a refused upstream key: while the upstream refuses the service's key, it is
asked again now and then, and the service sends again as soon as the key is accepted.

    upstream 401 ─▶ every request fails unsent (502), /readyz 503
         └─▶ wait 2 s ─▶ one request of one token ─▶ refused: wait twice as long (at most 60 s)
                                                   └▶ accepted: sending resumes, /readyz 200

A one-shot `llmgather run` stops at the refusal; a service stays up for weeks, and an operator
fixes the key where the upstream keeps it (a rotated key, a paid invoice, a proxy's config)
without restarting it. An orchestrator that took the service out of rotation on its /readyz
sends it nothing, so the service must ask on its own.
"""

from __future__ import annotations

import asyncio
import logging

from llmgather._errors import BudgetExhaustedError
from llmgather.service.settings import FIRST_KEY_RECHECK_S
from llmgather.service.upstream import Upstream

logger = logging.getLogger("llmgather.service")

MOST_RECHECK_S = 60.0


class KeyRecheck:
    """The recheck loop of one upstream; `run` is a task of the app's task group."""

    def __init__(
        self,
        upstream: Upstream,
        *,
        first_s: float = FIRST_KEY_RECHECK_S,
        most_s: float = MOST_RECHECK_S,
    ) -> None:
        self._upstream = upstream
        self._first_s = first_s
        self._most_s = max(first_s, most_s)

    async def run(self) -> None:
        engine = self._upstream.engine
        while True:
            await engine.key_refusal()
            delay = self._first_s
            while engine.key_refused:
                await asyncio.sleep(delay)
                try:
                    accepted = await self._upstream.recheck_key()
                except BudgetExhaustedError:  # `serve --max-cost` spent: nothing more is sent
                    logger.info("the cost cap is spent: the upstream key is not rechecked")
                    return
                except Exception:  # a recheck's own fault must not end the rechecks
                    logger.exception("llmgather serve: rechecking the upstream key failed")
                    accepted = False
                if accepted:
                    logger.warning("llmgather serve: the upstream accepts the key again")
                    break
                delay = min(2 * delay, self._most_s)
                logger.info("the upstream still refuses the key; asking again in %.0f s", delay)
