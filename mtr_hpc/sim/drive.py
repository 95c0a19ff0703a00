"""Running the agents' coroutines without an event loop when nothing in them awaits I/O.

The agents are written once, as coroutines, because `llm` backends await a client. With grounded
backends no coroutine ever suspends, so `drive` steps it to completion directly: no event loop, no
per-trace `asyncio.run` (which would cost more than synthesizing the trace).
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class SuspendedError(RuntimeError):
    """A coroutine given to `drive` awaited real I/O: it needs an event loop (`asyncio.run`)."""


def drive(coro: Coroutine[Any, Any, T]) -> T:
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise SuspendedError("this coroutine awaits I/O (an llm backend); run it with asyncio")
