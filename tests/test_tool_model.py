"""A model playing the tools: requests batched per turn round, typed errors for a misbehaving model,
episode consistency, the replay cache, and the counters GRPO logs (`grpo/toolsim/...`)."""

from __future__ import annotations

import asyncio
import json

from mtr_hpc.data import load_sample
from mtr_hpc.llm.coalesce import CoalescingClient
from mtr_hpc.llm.fake import ScriptedClient, schema_instance
from mtr_hpc.llm.protocol import ChatRequest, LLMError
from mtr_hpc.sim import ActorSimulator, answer_round, open_groups
from mtr_hpc.sim.config import ToolActorConfig
from mtr_hpc.sim.schemas import is_error
from mtr_hpc.sim.sim_cache import SimCache
from mtr_hpc.sim.toolactor import ToolActor
from mtr_hpc.sim.toolmaker import ToolMaker
from mtr_hpc.sim.utility_tools import COMPUTED


class CountingClient(ScriptedClient):
    """Answers each request with its schema's instance, strings marked by a running count; records
    the size of every `chat_many`."""

    def __init__(self, answer=None):
        self.count = 0
        self.batch_sizes: list[int] = []
        super().__init__(answer or self._answer)

    def _answer(self, req: ChatRequest) -> str:
        self.count += 1
        tag = f"v{self.count}" + " and more" * (3 * self.count)  # answers differ, in length too
        return json.dumps(_mark(schema_instance(req.json_schema), tag))

    async def chat_many(self, reqs):
        self.batch_sizes.append(len(reqs))
        return await super().chat_many(reqs)


def _mark(value, tag: str):
    if isinstance(value, str):
        return tag
    if isinstance(value, dict):
        return {k: _mark(v, tag) for k, v in value.items()}
    if isinstance(value, list):
        return [_mark(v, tag) for v in value]
    return value


def _simulator(client, **cfg) -> ActorSimulator:
    actor = ToolActor(ToolActorConfig(backend="llm", **cfg), llm=client, cache=SimCache())
    return ActorSimulator(ToolMaker(), actor)


def _simulated_tool(setup) -> tuple[str, dict]:
    """A call of the episode's first tool that the model plays (not a computed one), with arguments."""
    tool = next(t for t in setup.tools if t["function"]["name"] not in COMPUTED)
    params = tool["function"].get("parameters") or {}
    args = {k: "Paris" for k in params.get("required", [])}
    return tool["function"]["name"], args


def test_coalescing_client_sends_concurrent_requests_as_one_batch():
    inner = CountingClient(lambda req: req.messages[-1]["content"].upper())
    client = CoalescingClient(inner)

    async def both():
        reqs = [ChatRequest([{"role": "user", "content": f"q{i}"}]) for i in range(5)]
        return await asyncio.gather(*(client.chat(r) for r in reqs))

    out = asyncio.run(both())
    assert [r.text for r in out] == ["Q0", "Q1", "Q2", "Q3", "Q4"]
    assert inner.batch_sizes == [5] and client.batches == 1


def test_a_round_is_one_batch_and_group_members_get_one_answer():
    client = CountingClient()
    sim = _simulator(client)
    examples = load_sample("hotpotqa")[:2]
    setups = open_groups(sim, examples, group_size=2, seed=3)
    assert all(s.batch is sim for s in setups)
    requests = [(s, *_simulated_tool(s)) for s in setups]
    obs = answer_round(requests)
    # Four episodes, two distinct calls: one batch of two requests; group members share the answer.
    assert client.batch_sizes == [2]
    assert obs[0] == obs[1] and obs[2] == obs[3] and obs[0] != obs[2]
    assert all(not is_error(o) for o in obs)
    again = answer_round(requests[:1])  # the same call in the same episode: the episode's answer
    assert again == obs[:1] and client.batch_sizes == [2]
    later = open_groups(sim, examples[:1], group_size=1, seed=3)[0]  # a new episode: the replay cache
    assert answer_round([(later, *_simulated_tool(later))]) == obs[:1] and client.batch_sizes == [2]
    m = sim.metrics()
    assert m["calls"] == 6 and m["cache_hits"] == 1 and m["invalid"] == 0 and m["retries"] == 0
    assert m["latency_s"] > 0


def test_history_and_evidence_reach_the_tool_model():
    client = CountingClient()
    sim = _simulator(client)
    setup = sim.open(load_sample("hotpotqa")[0], seed=0)
    name, args = _simulated_tool(setup)
    setup.call(name, args)
    setup.call(name, {**args, **{k: "Berlin" for k in args}})
    second = client.requests[-1].messages[-1]["content"]
    assert "Earlier calls in this episode" in second and '"Paris"' in second
    assert "Reference facts" in second  # the evidence hint (`toolactor.evidence_hint`)


def test_a_misbehaving_tool_model_gives_typed_error_observations():
    examples = load_sample("hotpotqa")[:3]

    async def slow(req):
        await asyncio.sleep(5)

    class Slow(CountingClient):
        async def chat(self, req):
            await slow(req)

    garbage = CountingClient(lambda req: "I am not JSON at all")
    breaking = CountingClient(lambda req: json.dumps({"unexpected": [1, 2, 3]}))
    # A client that checks the schema itself (the transformers client) refuses with `bad_response`.
    refusing = CountingClient(lambda req: LLMError("bad_response", "violates the schema", retryable=True))
    failing = CountingClient(
        lambda req: LLMError("http", "503 from the tool model", retryable=True, status=503)
    )
    for client, kind, counter in (
        (garbage, "invalid_output", "invalid"),
        (breaking, "invalid_output", "invalid"),
        (refusing, "invalid_output", "invalid"),
        (failing, "llm_error", "errors"),
        (Slow(), "llm_error", "errors"),
    ):
        sim = _simulator(client, llm_retries=1, llm_timeout_s=0.2)
        setups = open_groups(sim, examples, group_size=1, seed=0)
        obs = answer_round([(s, *_simulated_tool(s)) for s in setups])
        assert [o["error"]["type"] for o in obs] == [kind] * 3, (client, obs)
        m = sim.metrics()
        assert m["retries"] == 3 and m[counter] >= 3 and m["errors"] == 3
    # Transient failures are not cached: a rerun asks again.
    assert len(_simulator(failing).actor.cache) == 0
