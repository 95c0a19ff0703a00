"""ToolActor: grounded observations (valid, deterministic, consistent), the replay cache, the llm backend."""

from __future__ import annotations

import asyncio
import json

import pytest

from mtr_hpc.data import QAExample, load_sample
from mtr_hpc.errors import ConfigError, DataError
from mtr_hpc.llm.fake import ScriptedClient
from mtr_hpc.llm.protocol import LLMError
from mtr_hpc.sim.sim_cache import cache_key
from mtr_hpc.synth import DistractorPool, SimCache, ToolActor, ToolActorConfig, ToolMaker, build_kb
from mtr_hpc.toolspec import validate_observation


def _episode(actor, ex, seed=0):
    kb = build_kb(ex)
    return actor.episode(ex, kb, ToolMaker().make(ex, kb), seed)


def _calls(ex, kb):
    calls = [("search", {"query": ex.question}), ("open_page", {"title": "No Such Page"})]
    calls += [(f"get_{r.replace(' ', '_')}", {"entity": s}) for s, r, _ in kb.triples]
    calls += [("open_page", {"title": t}) for t in list(kb.pages)[:3]]
    return calls


def _run_all(seed: int, benchmark: str = "hotpotqa", pool=None):
    actor = ToolActor(pool=pool)
    out = []
    for ex in load_sample(benchmark)[:15]:
        ep = _episode(actor, ex, seed)
        for name, args in _calls(ex, ep.kb):
            if name in ep.registry:
                args = (
                    {
                        next(iter(ep.registry[name]["function"]["parameters"]["properties"])): next(
                            iter(args.values())
                        )
                    }
                    if name.startswith("get_")
                    else args
                )
                out.append((name, args, actor.call(ep, name, args), ep))
    return out


@pytest.mark.parametrize("benchmark", ["hotpotqa", "2wiki", "musique"])
def test_grounded_observations_valid(benchmark):
    results = _run_all(0, benchmark)
    assert len(results) > 30
    for name, _, obs, ep in results:
        assert validate_observation(ep.registry[name], obs) == [], (name, obs)


def test_grounded_deterministic_for_seed_and_seed_changes_distractors():
    pool = DistractorPool.from_kbs([build_kb(e) for e in load_sample("musique")])
    a = [o for _, _, o, _ in _run_all(3, pool=pool)]
    b = [o for _, _, o, _ in _run_all(3, pool=pool)]
    assert a == b
    # The seed picks the distractors mixed into each example's search corpus.
    ex = load_sample("hotpotqa")[0]
    actor = ToolActor(pool=pool)
    corpora = [[p.title for p in actor._index(_episode(actor, ex, seed)).passages] for seed in (3, 3, 4)]
    assert corpora[0] == corpora[1] != corpora[2]
    assert any(t not in build_kb(ex).pages for t in corpora[0])


def test_lookup_reads_the_entity_page_in_the_search_format():
    ex = QAExample(
        "k",
        "2wiki",
        "Who directed Kiss Me Kate?",
        ["George Sidney"],
        "compositional",
        {"triples": [["Kiss Me Kate", "director", "George Sidney"]]},
    )
    actor = ToolActor()
    ep = _episode(actor, ex)
    obs = actor.call(ep, "get_director", {"title": "kiss me kate (film)"})
    assert obs["results"][0] == {
        "title": "Kiss Me Kate",
        "snippet": "The director of Kiss Me Kate is George Sidney.",
    }
    assert validate_observation(ep.registry["get_director"], obs) == []
    # An entity without a page still gets the best passages for "<entity> <relation>".
    miss = actor.call(ep, "get_director", {"title": "Unknown Film"})
    assert miss["entity"] == "Unknown Film" and miss["relation"] == "director"
    assert validate_observation(ep.registry["get_director"], miss) == []


def test_corpus_pages_replace_synthetic_ones():
    ex = next(e for e in load_sample("2wiki") if e.qtype == "compositional")
    actor = ToolActor(ToolActorConfig(corpus="sample"))
    ep = _episode(actor, ex)
    subject = ex.evidence["triples"][0][0]
    page = actor.call(ep, "open_page", {"title": subject})
    assert page["found"] and not any(
        s.startswith("The ") and " of " in s and " is " in s for s in page["sentences"][:1]
    )
    assert subject not in ep.kb.synthetic and ep.kb.gold_titles()


def test_noise_holds_the_gold_pages_back_seeded_and_replayable():
    examples = load_sample("2wiki")[:30]
    held = []
    for noise in (0.0, 0.5, 1.0):
        actor = ToolActor(ToolActorConfig(corpus="sample", noise=noise))
        gold_hits = 0
        for ex in examples:
            ep = _episode(actor, ex, seed=3)
            gold = set(ep.kb.gold_titles())
            obs = actor.call(ep, "search", {"query": ex.question})
            gold_hits += any(r["title"] in gold for r in obs["results"])
        held.append((actor.stats["held_back"], gold_hits))
    assert held[0][0] == 0 and held[2][0] == len(examples) and 0 < held[1][0] < len(examples)
    assert held[2][1] == 0 < held[0][1]  # all held back: no gold page in any result
    # The draw is the call's own: the same call of the same example and seed, the same answer.
    a = ToolActor(ToolActorConfig(corpus="sample", noise=0.5))
    b = ToolActor(ToolActorConfig(corpus="sample", noise=0.5))
    for ex in examples[:10]:
        args = {"query": ex.question}
        assert a.call(_episode(a, ex, 3), "search", args) == b.call(_episode(b, ex, 3), "search", args)


def test_noise_curriculum():
    cfg = ToolActorConfig(noise=0.1, noise_final=0.3, noise_ramp_steps=10)
    assert [round(cfg.noise_at(s), 3) for s in (0, 5, 10, 20)] == [0.1, 0.2, 0.3, 0.3]
    assert ToolActorConfig(noise=0.2).noise_at(7) == 0.2
    actor = ToolActor(cfg)
    assert actor.set_step(5) == actor.noise == pytest.approx(0.2)
    with pytest.raises(ConfigError, match="noise"):
        ToolActorConfig(noise=1.5)


def test_errors_are_typed_observations():
    actor = ToolActor()
    ex = load_sample("hotpotqa")[0]
    ep = _episode(actor, ex)
    unknown = actor.call(ep, "get_weather", {"city": "Paris"})
    assert unknown["error"]["type"] == "unknown_tool"
    bad = actor.call(ep, "search", {"query": 3})
    assert bad["error"]["type"] == "bad_arguments"
    assert validate_observation(ep.registry["search"], bad) == []
    not_dict = actor.call(ep, "search", "just text")
    assert not_dict["error"]["type"] == "bad_arguments"


def test_episode_consistency_and_cache_replay(tmp_path):
    path = tmp_path / "cache.jsonl"
    ex = load_sample("hotpotqa")[1]
    client = ScriptedClient(
        [
            json.dumps({"query": "q", "results": [{"title": "T", "snippet": "s1"}]}),
            json.dumps({"query": "q", "results": [{"title": "T", "snippet": "s2"}]}),
        ]
    )
    actor = ToolActor(ToolActorConfig(backend="llm", cache_path=str(path)), llm=client)
    ep = _episode(actor, ex)
    first = asyncio.run(actor.acall(ep, "search", {"query": "q"}))
    again = asyncio.run(actor.acall(ep, "search", {"query": "q"}))
    assert first == again and len(client.requests) == 1
    # A new run over the same cache file replays without asking the model.
    replay_client = ScriptedClient([])
    actor2 = ToolActor(ToolActorConfig(backend="llm", cache_path=str(path)), llm=replay_client)
    ep2 = _episode(actor2, ex)
    assert asyncio.run(actor2.acall(ep2, "search", {"query": "q"})) == first
    assert replay_client.requests == [] and actor2.cache.hits == 1


def test_cache_tolerates_truncated_last_line(tmp_path):
    path = tmp_path / "cache.jsonl"
    cache = SimCache(path)
    k1 = cache_key({"t": 1}, {"a": 1}, "ex", 0)
    k2 = cache_key({"t": 1}, {"a": 2}, "ex", 0)
    cache.put(k1, {"v": 1})
    cache.put(k2, {"v": 2})
    data = path.read_bytes()
    path.write_bytes(data[:-7])  # killed while writing the second record
    reloaded = SimCache(path)
    assert reloaded.dropped_tail and len(reloaded) == 1 and reloaded.get(k1) == {"v": 1}
    reloaded.put(k2, {"v": 2})
    assert len(SimCache(path)) == 2 and not SimCache(path).dropped_tail


def test_cache_corrupt_middle_line_is_data_error(tmp_path):
    path = tmp_path / "cache.jsonl"
    path.write_text(
        '{"key": ["a", "{}", "e", 0], "obs": {}}\nnot json\n{"key": ["b", "{}", "e", 0], "obs": {}}\n'
    )
    with pytest.raises(DataError, match="line 2"):
        SimCache(path)


def test_llm_backend_invalid_output_and_errors_become_error_observations():
    ex = load_sample("hotpotqa")[0]
    client = ScriptedClient(
        [
            "not json",
            json.dumps({"query": 1}),
            json.dumps({"results": "x"}),  # 3 invalid -> invalid_output
            LLMError("http", "500", status=500),
        ]  # not retryable -> llm_error
    )
    actor = ToolActor(ToolActorConfig(backend="llm", llm_retries=2), llm=client)
    ep = _episode(actor, ex)
    obs = asyncio.run(actor.acall(ep, "search", {"query": "a"}))
    assert obs["error"]["type"] == "invalid_output"
    assert validate_observation(ep.registry["search"], obs) == []
    err = asyncio.run(actor.acall(ep, "open_page", {"title": "Ed Wood"}))
    assert err["error"]["type"] == "llm_error"
    assert actor.stats["invalid_json"] == 1 and actor.stats["invalid_schema"] == 2
    # compare is computed, never simulated
    assert "compare" in ep.registry
    cmp_obs = asyncio.run(actor.acall(ep, "compare", {"a": "1 May 1900", "b": "1901", "operator": "earlier"}))
    assert cmp_obs == {"result": True, "kind": "date"}
    assert "Reference facts" in client.requests[0].messages[-1]["content"]
    assert client.requests[0].json_schema == ep.registry["search"]["x-returns"]
