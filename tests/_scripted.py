"""A scripted LLM client for agent tests: answers from a list in call order.

An exception in the list is raised instead of answered; past the end of the list it answers `default`
(the package's `mtr_hpc.llm.fake.ScriptedClient` raises there instead, which these tests do not want).
"""

from __future__ import annotations

from mtr_hpc.llm.protocol import ChatResponse


class ScriptedClient:
    name = "scripted"

    def __init__(self, outputs, default: str = "{}", supports_json_schema: bool = True):
        self.outputs = list(outputs)
        self.default = default
        self.supports_json_schema = supports_json_schema
        self.requests = []

    async def chat(self, req):
        self.requests.append(req)
        out = self.outputs.pop(0) if self.outputs else self.default
        if isinstance(out, Exception):
            raise out
        return ChatResponse(out, "stop", model="scripted")

    async def chat_many(self, reqs):
        return [await self.chat(r) for r in reqs]
