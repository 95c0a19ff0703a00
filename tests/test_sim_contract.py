"""The `ToolSimulator` contract, run against every simulator that runs here: grounded and llm-played
simulated tools, and corpus retrieval."""

from __future__ import annotations

import pytest

from mtr_hpc.data import load_sample
from mtr_hpc.llm.fake import EchoClient
from mtr_hpc.sim import ActorSimulator, EpisodeSetup, RetrievalSimulator, ToolSimulator, open_groups
from mtr_hpc.synth import DistractorPool, ToolActor, ToolActorConfig, ToolMaker, build_kb
from mtr_hpc.toolspec import ToolRegistry, validate_toolset

EXAMPLES = load_sample("hotpotqa")[:3]


def _grounded() -> ToolSimulator:
    pool = DistractorPool.from_kbs([build_kb(ex) for ex in EXAMPLES])
    return ActorSimulator(ToolMaker(), ToolActor(ToolActorConfig(), pool=pool))


def _llm() -> ToolSimulator:
    # The echo client answers each request with an instance of the schema it asks for.
    return ActorSimulator(ToolMaker(), ToolActor(ToolActorConfig(backend="llm"), llm=EchoClient()))


def _retrieval() -> ToolSimulator:
    from mtr_hpc.retrievers import open_retriever
    from mtr_hpc.sim.config import RetrievalEnvConfig

    return RetrievalSimulator(open_retriever(RetrievalEnvConfig(corpus="sample")))


SIMULATORS = {"grounded": _grounded, "llm": _llm, "retrieval": _retrieval}


def _a_call(setup: EpisodeSetup) -> tuple[str, dict]:
    """A well-formed call of the first tool that takes a string: the question's first words."""
    for tool in setup.tools:
        fn = tool["function"]
        props = fn.get("parameters", {}).get("properties", {})
        strings = [k for k, p in props.items() if p.get("type") == "string"]
        if strings:
            return fn["name"], {strings[0]: " ".join(setup.example.question.split()[:4])}
    raise AssertionError("no tool takes a string")


@pytest.fixture(scope="module", params=sorted(SIMULATORS))
def simulator(request) -> ToolSimulator:
    return SIMULATORS[request.param]()


def test_open_gives_valid_tools_and_schema_valid_observations(simulator):
    assert isinstance(simulator, ToolSimulator)
    for ex in EXAMPLES:
        setup = simulator.open(ex, seed=3)
        assert setup.example is ex and setup.tools and validate_toolset(setup.tools) == []
        name, args = _a_call(setup)
        obs = setup.call(name, args)
        assert isinstance(obs, dict) and ToolRegistry(setup.tools).validate_observation(name, obs) == []


def test_bad_calls_are_typed_error_observations_never_exceptions(simulator):
    setup = simulator.open(EXAMPLES[0], seed=3)
    name, _ = _a_call(setup)
    assert setup.call("no_such_tool", {})["error"]["type"] == "unknown_tool"
    assert setup.call(name, {"not_a_parameter": 1})["error"]["type"] == "bad_arguments"
    assert setup.call(name, "not an object")["error"]["type"] == "bad_arguments"


def test_a_group_shares_its_tools_and_answers(simulator):
    a, b = open_groups(simulator, EXAMPLES[:1], group_size=2, seed=5)
    assert a.tools == b.tools
    name, args = _a_call(a)
    assert a.call(name, args) == b.call(name, args)
