"""AutoAgent: writes the think-act-observe sequence of one example as a `Trace` (design §3).

`grounded` (default): follows the evidence plan of `plans.py`; each think restates the previous
observations (`narrate.py`), calls go to the ToolActor, and the answer comes from the chain (the plan's
answer, or the comparison's verdict). `llm`: a model prompted with the tools and the question writes each
turn; the text is parsed with the trace parser, every call goes to the ToolActor, and the episode stops
at an answer, at the turn limit, at unparseable output or at a client error, recorded in
`meta["stop_reason"]`. The model is shown tool results as user messages wrapped in `<tool_response>`
(any chat endpoint accepts that), while the trace keeps the OpenAI form with `tool` messages.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..sim.text import search_query
from ..sim.toolactor import ToolActor, ToolState
from ..toolspec import openai_view
from ..trace.model import Trace
from ..trace.parser import parse_turn
from .config import AutoAgentConfig
from .narrate import conclusion, describe, find_value
from .plans import PlannedCall, PlannedTurn, make_plan

SYSTEM_PROMPT = (
    "You answer questions by reasoning step by step and calling tools. In every turn first think inside "
    '<think>...</think>, then either call one or more tools, each as <tool_call>{"name": ..., '
    '"arguments": {...}}</tool_call>, or give the final short answer inside <answer>...</answer>.'
)


# json.dumps with any option builds a new encoder per call; the encoder is stateless, so share one.
_dumps = json.JSONEncoder(ensure_ascii=False).encode


@dataclass
class TraceBuilder:
    system: str
    question: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    n_calls: int = 0
    n_turns: int = 0

    def __post_init__(self) -> None:
        self.messages = [
            {"role": "system", "content": self.system},
            {"role": "user", "content": self.question},
        ]

    def call_turn(self, think: str, calls: list[tuple[str, Any]]) -> list[str]:
        """Append an assistant turn with `calls` (name, arguments); returns the call ids."""
        ids, tool_calls = [], []
        self.n_turns += 1
        for name, args in calls:
            call_id = f"call_{self.n_calls}"
            self.n_calls += 1
            ids.append(call_id)
            arguments = args if isinstance(args, str) else _dumps(args)
            tool_calls.append(
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            )
        self.messages.append(
            {"role": "assistant", "content": f"<think>{think}</think>", "tool_calls": tool_calls}
        )
        return ids

    def observation(self, call_id: str, obs: Any) -> None:
        self.messages.append({"role": "tool", "tool_call_id": call_id, "content": _dumps(obs)})

    def answer_turn(self, think: str, answer: str) -> None:
        self.messages.append(
            {"role": "assistant", "content": f"<think>{think}</think><answer>{answer}</answer>"}
        )

    def raw_turn(self, text: str) -> None:
        self.messages.append({"role": "assistant", "content": text})


class AutoAgent:
    def __init__(
        self, cfg: AutoAgentConfig | None = None, actor: ToolActor | None = None, *, llm: Any = None
    ):
        self.cfg = cfg or AutoAgentConfig()
        if self.cfg.backend == "llm" and llm is None:
            raise ConfigError("autoagent.backend", "the llm backend needs an LLM client")
        self.actor = actor or ToolActor()
        self.llm = llm

    async def arun(self, ep: ToolState, trace_id: str) -> Trace:
        t0 = time.perf_counter()
        if self.cfg.backend == "grounded":
            builder, answer, stop, notes = await self._grounded(ep)
        else:
            builder, answer, stop, notes = await self._llm(ep)
        ex = ep.example
        meta = {"stop_reason": stop, "seed": ep.seed, "agent_s": round(time.perf_counter() - t0, 6), **notes}
        return Trace(trace_id, ex.id, ex.benchmark, list(ep.toolset.tools), builder.messages, answer, meta)

    async def _grounded(self, ep: ToolState):
        ex, kb = ep.example, ep.kb
        plan = make_plan(ex, kb, ep.toolset, ep.toolset.task)
        builder = TraceBuilder(SYSTEM_PROMPT, ex.question)
        said = ""  # the first think is its intent alone: the question is the turn right above
        observations: list[dict] = []
        turns = list(plan.turns)
        recovered = missed = 0
        while turns and builder.n_turns < max(0, self.cfg.max_turns - 1):
            turn = turns.pop(0)
            ids = builder.call_turn(f"{said} {turn.intent}".strip(), [(c.name, c.args) for c in turn.calls])
            said_parts, retry = [], []
            for call_id, call in zip(ids, turn.calls, strict=True):
                obs = await self.actor.acall(ep, call.name, call.args)
                builder.observation(call_id, obs)
                observations.append(obs)
                said_parts.append(
                    describe(call.name, call.args, obs, kb, f"{ex.question} {plan.answer}", call.expect)
                )
                if (
                    call.expect
                    and call.page
                    and "search" in ep.toolset.names()
                    and not find_value(obs, call.expect)
                ):
                    retry.append(PlannedCall("search", {"query": search_query(call.page)}, call.expect))
            said = " ".join(said_parts)
            if retry and not turn.recovery:
                # A real engine misses pages (and a noisy simulator holds them back): search for the
                # page by name, as a person would, before going on.
                missed += 1
                names = " and ".join(c.args["query"] for c in retry)
                turns.insert(0, PlannedTurn(f"Let me search for {names} directly.", retry, recovery=True))
            elif turn.recovery:
                done = zip(turn.calls, observations[-len(turn.calls) :], strict=True)
                recovered += sum(1 for c, o in done if find_value(o, c.expect))
        answer = plan.decide(observations) if plan.decide else plan.answer
        builder.answer_turn(f"{said} {conclusion(answer)}".strip(), answer)
        notes = dict(plan.notes)
        if missed:
            notes["recovery"] = {"missed": missed, "recovered": recovered}
        return builder, answer, "answer", {"plan": notes} if notes else {}

    async def _llm(self, ep: ToolState):
        from ..llm.protocol import ChatRequest, LLMError

        ex = ep.example
        builder = TraceBuilder(SYSTEM_PROMPT, ex.question)
        tools_text = "\n".join(_dumps(openai_view(t)) for t in ep.toolset.tools)
        convo = [
            {"role": "system", "content": f"{SYSTEM_PROMPT}\n\n<tools>\n{tools_text}\n</tools>"},
            {"role": "user", "content": ex.question},
        ]
        answer, stop, notes = None, "turn_limit", {}
        for turn_no in range(self.cfg.max_turns):
            req = ChatRequest(
                list(convo),
                max_tokens=self.cfg.max_tokens,
                temperature=self.cfg.temperature,
                top_p=self.cfg.top_p,
                seed=ep.seed + turn_no,
            )
            try:
                text = (await self.llm.chat(req)).text
            except LLMError as exc:
                stop, notes = "llm_error", {"llm_error": exc.kind}
                break
            parsed = parse_turn(text)
            if parsed.errors:
                builder.raw_turn(text)
                stop, notes = "parse_error", {"parse_error": parsed.errors[0].code}
                break
            if parsed.answer is not None:
                answer, stop = parsed.answer, "answer"
                builder.answer_turn(parsed.think or "", parsed.answer)
                break
            ids = builder.call_turn(parsed.think or "", [(c.name, c.arguments) for c in parsed.tool_calls])
            responses = []
            for call_id, call in zip(ids, parsed.tool_calls, strict=True):
                obs = await self.actor.acall(ep, call.name, call.arguments)
                builder.observation(call_id, obs)
                responses.append(f"<tool_response>{_dumps(obs)}</tool_response>")
            convo += [
                {"role": "assistant", "content": text},
                {"role": "user", "content": "\n".join(responses)},
            ]
        return builder, answer, stop, notes
