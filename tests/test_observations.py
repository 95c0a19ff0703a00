"""The one observation format of search-like tools (simulator and real engine), the noise that holds
evidence back, the recovery turns synthesis writes after a miss, the fidelity statistics and the paired
bootstrap intervals of the report."""

from __future__ import annotations

import json

import pytest
from _corpus import index_of

from mtr_hpc.data import load_corpus, load_sample
from mtr_hpc.errors import DataError
from mtr_hpc.eval.stats import fmt_interval, paired_bootstrap
from mtr_hpc.sim.config import ResultsConfig, ToolActorConfig
from mtr_hpc.sim.evidence import build_kb
from mtr_hpc.sim.fidelity import observation_stats, pool
from mtr_hpc.sim.observations import hold_back, lookup_payload, passage_text, search_payload
from mtr_hpc.sim.retrieval import Passage, PassageIndex
from mtr_hpc.sim.retrieval_env import CorpusPages, corpus_path
from mtr_hpc.synth import SynthAgents, SynthConfig, synthesize_example

LONG = Passage(
    "Ada Lovelace",
    [
        "Ada Lovelace was an English mathematician and writer.",
        "She is chiefly known for her work on the Analytical Engine of Charles Babbage.",
        "She was the only legitimate child of the poet Lord Byron and Anne Isabella Milbanke.",
        "Her mother promoted her interest in mathematics and logic.",
    ],
)


def test_a_passage_over_the_budget_keeps_the_sentences_that_match_the_query_in_page_order():
    assert passage_text(LONG, "anything", 200) == " ".join(LONG.sentences)
    cut = passage_text(LONG, "Lord Byron poet mathematician", 24)
    assert cut == (
        "Ada Lovelace was an English mathematician and writer. "
        "She was the only legitimate child of the poet Lord Byron and Anne Isabella Milbanke."
    )
    assert len(cut.split()) <= 24
    # One sentence longer than the budget: its first words.
    assert passage_text(Passage("T", ["one two three four five six"]), "x", 3) == "one two three"


def test_search_and_lookup_share_the_results_format():
    index = PassageIndex(
        [
            LONG,
            Passage("Lord Byron", ["Lord Byron was a poet. His daughter was Ada Lovelace."]),
            Passage("X", ["x"]),
        ]
    )
    fmt = ResultsConfig(top_k=2, passage_words=100)
    found = search_payload(index, "Ada Lovelace father poet", 2, fmt)
    assert set(found) == {"query", "results"} and len(found["results"]) == 2
    assert all(set(r) == {"title", "snippet"} for r in found["results"])
    # A relation tool: the entity's page first, whatever BM25 says, then the best passages.
    got = lookup_payload(index, "lord byron", "child", fmt)
    assert [r["title"] for r in got["results"]] == ["Lord Byron", "Ada Lovelace"]
    # Held back: the page is gone from the results, the next passages take its place.
    held = lookup_payload(index, "lord byron", "child", fmt, frozenset({"Lord Byron"}))
    assert "Lord Byron" not in [r["title"] for r in held["results"]] and len(held["results"]) == 2


def test_hold_back_is_drawn_from_the_call_and_follows_its_probability():
    gold = ["A", "B"]
    draws = [bool(hold_back(0.3, 7, "ex", "search", {"query": f"q{i}"}, gold)) for i in range(2000)]
    assert 0.25 < sum(draws) / len(draws) < 0.35
    again = [bool(hold_back(0.3, 7, "ex", "search", {"query": f"q{i}"}, gold)) for i in range(2000)]
    assert draws == again
    assert hold_back(1.0, 7, "ex", "search", {"query": "q"}, gold) == frozenset(gold)
    assert hold_back(0.0, 7, "ex", "search", {"query": "q"}, gold) == frozenset()
    assert hold_back(1.0, 7, "ex", "search", {"query": "q"}, []) == frozenset()


def test_corpus_loader_errors_and_pages():
    with pytest.raises(DataError, match="does not exist"):
        corpus_path("/no/such/corpus.jsonl")
    pages = CorpusPages.from_corpus(load_corpus(corpus_path("sample")))
    assert len(pages.passages) > 7000 and all(p.sentences for p in pages.passages[:50])
    index = PassageIndex.titles_only(pages.passages)
    assert index.find_page(pages.passages[0].title) is pages.passages[0]


def _synth(noise: float, benchmark: str = "2wiki", n: int = 40):
    cfg = SynthConfig()
    cfg.toolactor = ToolActorConfig(corpus="sample", noise=noise)
    agents = SynthAgents.build(cfg)
    return [synthesize_example(ex, cfg, agents) for ex in load_sample(benchmark)[:n]]


def test_synthesis_recovers_from_a_miss_with_a_search_for_the_page():
    traces = [t for t, _ in _synth(0.5)]
    recovered = [t for t in traces if "recovery" in (t.meta.get("plan") or {})]
    assert recovered, "half the lookups miss: some traces must recover"
    t = recovered[0]
    assistant = [m for m in t.messages if m["role"] == "assistant"]
    # A lookup whose results missed the value, then a search for the page by name.
    names = [[c["function"]["name"] for c in m.get("tool_calls") or []] for m in assistant]
    miss_turn = next(
        i for i, m in enumerate(assistant) if "do not give" in m["content"] or "do not answer" in m["content"]
    )
    assert names[miss_turn] == ["search"] or "search" in names[miss_turn]
    assert "Let me search for" in assistant[miss_turn]["content"]
    clean = [t for t, _ in _synth(0.0)]
    assert sum("recovery" in (t.meta.get("plan") or {}) for t in clean) < len(recovered)


def test_fidelity_counts_answers_empties_tokens_and_gold_pages():
    ex = load_sample("2wiki")[0]
    kb = build_kb(ex)
    gold = kb.gold_titles()
    answer = ex.answers[0]
    msgs = [
        {
            "role": "tool",
            "content": json.dumps(
                {"query": "q", "results": [{"title": gold[0], "snippet": f"It is {answer}."}]}
            ),
        },
        {"role": "tool", "content": json.dumps({"query": "q", "results": []})},
        {"role": "tool", "content": json.dumps({"result": True, "kind": "date"})},
    ]
    stats = observation_stats(msgs, [answer], gold, count_tokens=lambda s: 10)
    assert stats["obs"] == 2 and stats["obs_answer"] == 1 and stats["obs_empty"] == 1 and stats["answer_seen"]
    assert stats["gold_found"][0] and stats["tool_messages"] == 3 and stats["obs_tokens"] == 30
    pooled = pool([stats, observation_stats([], [answer], gold)])
    assert pooled["answer_present"] == 0.5 and pooled["answer_seen"] == 0.5 and pooled["empty"] == 0.5
    assert pooled["recall_hop1"] == 0.5 and pooled["obs_tokens"] == 10


def test_paired_bootstrap_interval():
    same = paired_bootstrap([[0.0] * 30])
    assert same == (0.0, 0.0, 0.0)
    mean, lo, hi = paired_bootstrap([[1.0] * 10 + [0.0] * 30, [1.0] * 20 + [-1.0] * 5 + [0.0] * 15])
    assert mean == pytest.approx((10 / 40 + 15 / 40) / 2)
    assert lo < mean < hi and lo > 0
    assert paired_bootstrap([[1.0, -1.0] * 10], seed=1) == paired_bootstrap([[1.0, -1.0] * 10], seed=1)
    assert fmt_interval(0.052, -0.01, 0.113) == "+5.2 [-1.0, +11.3]"


def test_grpo_can_train_against_the_real_engine(tmp_path):
    from mtr_hpc.errors import ConfigError
    from mtr_hpc.sim import ActorSimulator, RetrievalSimulator
    from mtr_hpc.sim.config import RetrievalEnvConfig
    from mtr_hpc.train.grpo_config import GRPOConfig
    from mtr_hpc.train.grpo_setup import build_simulator

    sim = build_simulator(GRPOConfig(tools="retrieval"), tmp_path)
    assert isinstance(sim, RetrievalSimulator)
    grounded = build_simulator(GRPOConfig(), tmp_path)
    assert isinstance(grounded, ActorSimulator) and set(sim.metrics()) == set(grounded.metrics())
    ex = load_sample("2wiki")[0]
    setup = sim.open(ex, seed=0)
    before = sim.metrics()["calls"]
    setup.call("search", {"query": ex.question})
    assert sim.metrics()["calls"] == before + 1 and sim.metrics()["latency_s"] > 0
    # The policy gets the tools the simulator would give it.
    assert [t["function"]["name"] for t in setup.tools] == [
        t["function"]["name"] for t in grounded.open(ex, 0).tools
    ]
    with pytest.raises(ConfigError, match="retrieval.corpus"):
        GRPOConfig(tools="retrieval", retrieval=RetrievalEnvConfig(corpus=""))
    # Against a retrieval server: the same observation, and a turn round's calls go in one request.
    from mtr_hpc.retrievers import open_retriever
    from mtr_hpc.retrievers.server import RetrieverServeConfig, RetrieverServer

    server = RetrieverServer(open_retriever(RetrievalEnvConfig()), RetrieverServeConfig(port=0)).start()
    try:
        remote = build_simulator(
            GRPOConfig(tools="retrieval", retrieval=RetrievalEnvConfig(backend="http", url=server.url)),
            tmp_path,
        )
        rsetup = remote.open(ex, seed=0)
        assert rsetup.batch is remote
        assert rsetup.call("search", {"query": ex.question}) == setup.call("search", {"query": ex.question})
    finally:
        server.close()


PAGES = [
    LONG,
    Passage("Lord Byron", ["Lord Byron was a poet.", "His daughter was Ada Lovelace."]),
    Passage("Charles Babbage", ["Charles Babbage designed the Analytical Engine."]),
    Passage("Paris (city)", ["Paris is the capital of France."]),
]


def _records() -> list[tuple[str, str]]:
    return [(p.title, " ".join(p.sentences)) for p in PAGES]


def _served(tmp_path):
    from mtr_hpc.retrievers.http import HttpRetriever
    from mtr_hpc.retrievers.server import RetrieverServeConfig, RetrieverServer

    server = RetrieverServer(index_of(_records(), tmp_path), RetrieverServeConfig(port=0)).start()
    return HttpRetriever(server.url, timeout_s=10), server.close


RETRIEVERS = {
    "okapi": lambda tmp: (PassageIndex(PAGES), None),
    "bm25_index": lambda tmp: (index_of(_records(), tmp), None),
    "http": _served,
}


@pytest.mark.parametrize("name", sorted(RETRIEVERS))
def test_retriever_contract(name, tmp_path):
    """Every engine behind `search`: the in-memory one of a synthesis episode, the on-disk index, and
    the index behind `mtr serve-retriever` through the HTTP client."""

    index, close = RETRIEVERS[name](tmp_path)
    try:
        _check_retriever(index)
    finally:
        if close is not None:
            close()


def _check_retriever(index) -> None:
    from mtr_hpc.sim.retrieval import Retriever

    assert isinstance(index, Retriever)
    top = index.rank("Babbage designed Analytical Engine", 2)
    assert top[0].title == "Charles Babbage" and len(top) == 2
    rest = index.rank("Babbage designed Analytical Engine", 2, {"Charles Babbage"})
    assert len(rest) == 2 and "Charles Babbage" not in [p.title for p in rest]
    # At most top_k, and a passage that matches comes first.
    assert index.rank("anything", 0) == [] and "Lord Byron" in [p.title for p in index.rank("poet", 10)]
    assert len(index.rank("poet", 10)) <= len(PAGES)
    # Titles match without case, punctuation or a parenthetical.
    assert index.find_page("lord byron!").title == "Lord Byron"
    assert index.find_page("Paris").title == "Paris (city)"
    assert index.find_page("Atlantis") is None


def test_shard_statistics_combine_into_the_pooled_ones():
    from mtr_hpc.sim.fidelity import combine

    ex = load_sample("2wiki")[0]
    gold, answer = build_kb(ex).gold_titles(), ex.answers[0]

    def stats(k: int) -> dict:
        hit = {
            "role": "tool",
            "content": json.dumps({"query": "q", "results": [{"title": gold[0], "snippet": answer}]}),
        }
        miss = {"role": "tool", "content": json.dumps({"query": "q", "results": []})}
        return observation_stats([hit] * (k % 2) + [miss] * k, [answer], gold)

    a, b = [stats(k) for k in (1, 2, 3)], [stats(k) for k in (4, 5)]
    whole, parts = pool(a + b), combine([pool(a), pool(b)])
    for key in ("episodes", "observations", "answer_present", "answer_seen", "empty"):
        assert parts[key] == pytest.approx(whole[key])
    assert combine([]) == {} and whole["recall_hop3"] is None
