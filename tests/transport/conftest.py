"""The transport's tests run on asyncio's event loop and on uvloop's: uvicorn runs
`llmgather serve` on uvloop, whose loop differs from asyncio's in what it accepts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest
import uvloop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
