"""The plain-Python BM25 gives rank_bm25's BM25Okapi scores bit for bit, hence the same rankings."""

from __future__ import annotations

import random

import pytest
from rank_bm25 import BM25Okapi

from mtr_hpc.data import load_sample
from mtr_hpc.sim.bm25 import Okapi, TermCounts
from mtr_hpc.sim.retrieval import Passage, PassageIndex, example_corpus
from mtr_hpc.sim.text import tokens
from mtr_hpc.synth import DistractorPool, build_kb

BENCHMARKS = ("hotpotqa", "musique", "2wiki", "bamboogle")


def _reference_order(docs: list[list[str]], query: list[str]) -> tuple[list[float], list[int]]:
    scores = [float(s) for s in BM25Okapi(docs).get_scores(query)]
    return scores, sorted(range(len(docs)), key=lambda i: (-scores[i], i))


def _assert_same(docs: list[list[str]], queries: list[list[str]]) -> int:
    ours = Okapi([TermCounts(d) for d in docs])
    floors = 0
    for q in queries:
        want, want_order = _reference_order(docs, q)
        got = ours.scores(q)
        assert got == want, (docs, q)  # exact float equality, not approx
        assert sorted(range(len(docs)), key=lambda i: (-got[i], i)) == want_order
        floors += any(ours.idf(w) == ours._epsilon_floor() for w in q if w)
    return floors


def test_random_corpora_score_exactly_like_rank_bm25():
    rng = random.Random(3)
    vocab = [f"w{i}" for i in range(12)]
    floors = 0
    for _ in range(300):
        # Small corpora over a small vocabulary: many words occur in more than half the documents, so
        # the epsilon floor (and a negative average idf) is exercised, as are ties.
        docs = [rng.choices(vocab, k=rng.randint(1, 9)) for _ in range(rng.randint(1, 7))]
        queries = [rng.choices(vocab + ["zz"], k=rng.randint(1, 5)) for _ in range(4)]
        floors += _assert_same(docs, queries)
    assert floors > 50


def test_sample_corpora_rank_like_rank_bm25():
    n_queries = 0
    for name in BENCHMARKS:
        examples = load_sample(name)
        kbs = [build_kb(e) for e in examples]
        pool = DistractorPool.from_kbs(kbs)
        for seed, (ex, kb) in enumerate(zip(examples, kbs, strict=True)):
            corpus = example_corpus(kb, pool, random.Random(f"{seed}:{ex.id}"), 4)
            docs = [tokens(p.title + " " + " ".join(p.sentences)) or ["_"] for p in corpus]
            queries = [tokens(ex.question), tokens(ex.answers[0]), *(tokens(p.title) for p in corpus[:3])]
            _assert_same(docs, [q for q in queries if q])
            n_queries += len(queries)
    assert n_queries > 500


def test_passage_index_results_match_a_rank_bm25_ranking():
    ex = load_sample("hotpotqa")[0]
    kb = build_kb(ex)
    corpus = [Passage(t, list(s)) for t, s in kb.pages.items()] + [Passage("Empty", ["..."])]
    index = PassageIndex(corpus)
    docs = [tokens(p.title + " " + " ".join(p.sentences)) or ["_"] for p in corpus]
    query = ex.question
    _, order = _reference_order(docs, tokens(query))
    got = index.rank(query, 5)
    assert [p.title for p in got] == [corpus[i].title for i in order[:5]]
    # Excluded titles are skipped, and the next ones fill their places.
    held = {corpus[order[0]].title}
    assert [p.title for p in index.rank(query, 4, held)] == [corpus[i].title for i in order[1:5]]
    # A query without tokens ranks the corpus in its own order.
    assert [p.title for p in index.rank("the of", 3)] == [p.title for p in corpus[:3]]


def test_okapi_needs_a_document():
    with pytest.raises(ValueError):
        Okapi([])


def test_an_episodes_index_scores_as_rank_bm25():
    for ex in load_sample("hotpotqa")[:10]:
        corpus = [Passage(t, list(s)) for t, s in build_kb(ex).pages.items()]
        lib = BM25Okapi([tokens(p.title + " " + " ".join(p.sentences)) or ["_"] for p in corpus])
        fast = PassageIndex(corpus)
        for query in (ex.question, ex.answer, "Paris capital"):
            assert fast.scores(query) == lib.get_scores(tokens(query)).tolist()
    assert PassageIndex([]).rank("anything", 3) == []
