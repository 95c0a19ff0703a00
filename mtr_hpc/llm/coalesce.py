"""Gathers the `chat` calls that coroutines make together into one `chat_many` of the client below.

A model that plays tools answers every call of a turn round: one request per call, made by
concurrent coroutines (`asyncio.gather`), each awaiting its own `chat`. An in-process engine decodes
best when those requests arrive as one batch, and an HTTP client sends a batch concurrently.
`CoalescingClient.chat` parks each request; the first one schedules a flush with `call_soon`, which runs
after every coroutine that is ready in this loop iteration has reached its own `chat`, so a round's
requests (and, later, its retries) leave together.
"""

from __future__ import annotations

import asyncio

from .protocol import ChatRequest, ChatResponse, LLMError


class CoalescingClient:
    """`LLMClient` over `client`; `batches` counts the `chat_many` calls sent (one per flush)."""

    def __init__(self, client):
        self.client = client
        self.name = getattr(client, "name", "coalescing")
        self.supports_json_schema = client.supports_json_schema
        self.batches = 0
        self._pending: list[tuple[ChatRequest, asyncio.Future]] = []

    async def chat(self, req: ChatRequest) -> ChatResponse:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        if not self._pending:
            loop.call_soon(lambda: loop.create_task(self._flush()))
        self._pending.append((req, fut))
        result = await fut
        if isinstance(result, LLMError):
            raise result
        return result

    async def chat_many(self, reqs: list[ChatRequest]) -> list[ChatResponse | LLMError]:
        return await self.client.chat_many(reqs)

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        self.batches += 1
        try:
            results = await self.client.chat_many([req for req, _ in batch])
        except Exception as exc:  # a client that raises for the whole batch fails each of its requests
            results = [exc] * len(batch)
        for (_, fut), result in zip(batch, results, strict=True):
            if fut.done():  # the caller stopped waiting (a timeout)
                continue
            if isinstance(result, BaseException) and not isinstance(result, LLMError):
                fut.set_exception(result)
            else:
                fut.set_result(result)
