"""BM25 passage retrieval: the one search engine behind every `search`-like tool (the `Retriever`).

Two collections use it. The grounded simulator indexes one example's own pages (context paragraphs, fact
and sub-answer passages, or the corpus pages of its supporting titles) plus seeded distractor passages,
so a search returns the evidence among plausible noise. The `retrieval` environment searches a whole
corpus with an on-disk index or a server (`mtr_hpc.retrievers`), with the same BM25 scores. Both answer
through `sim/observations.py`, so the policy reads the same format and length from each; only the
collection differs.

Every episode has its own collection, but its passages recur (the same pages in every seed's episode,
the same distractor pool for a whole run), so the tokens of passages are memoised by text.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol, runtime_checkable

from .bm25 import Okapi, TermCounts
from .evidence import EvidenceKB
from .text import loose_key, norm_key, tokens

_CACHE_SIZE = 1 << 13


@lru_cache(maxsize=_CACHE_SIZE)
def _document(text: str) -> TermCounts:
    # "_" stands in for a passage without tokens: rank_bm25 divides by the mean document length.
    return TermCounts(tokens(text) or ["_"])


@dataclass
class Passage:
    title: str
    sentences: list[str]


@runtime_checkable
class Retriever(Protocol):
    """A search engine over titled passages: what `search`, `open_page` and the relation tools read."""

    def rank(self, query: str, top_k: int, exclude: Iterable[str] = ()) -> list[Passage]:
        """The `top_k` best passages for `query` by BM25, best first, none titled in `exclude`."""
        ...

    def find_page(self, title: str) -> Passage | None:
        """The passage titled `title` (case, punctuation and parentheticals aside), or None."""
        ...


class Prefetched:
    """A search engine's answers to one turn round's queries, fetched in one batch per `top_k`
    (`rank_many`), answering `rank` from them; a call they cannot answer (an exclusion that leaves too
    few) goes to the engine."""

    def __init__(self, engine, wanted: dict[int, list[str]]):
        self.engine = engine
        self.results: dict[str, tuple[int, list[Passage]]] = {}  # query -> (k fetched, passages)
        for k, queries in sorted(wanted.items()):
            unique = list(dict.fromkeys(queries))
            for q, passages in zip(unique, engine.rank_many(unique, k), strict=True):
                self.results[q] = (k, passages)  # the largest k of a query wins

    def rank(self, query: str, top_k: int, exclude: Iterable[str] = ()) -> list[Passage]:
        skip = set(exclude)
        k, passages = self.results.get(query, (0, []))
        if k >= top_k:
            kept = [p for p in passages if p.title not in skip][:top_k]
            if len(kept) == top_k or len(passages) < k:
                return kept
        return self.engine.rank(query, top_k, skip)

    def find_page(self, title: str) -> Passage | None:
        return self.engine.find_page(title)


class DistractorPool:
    """Passages of many examples (or of a corpus); each example draws its distractors with its own seed."""

    def __init__(self, passages: list[Passage] | None = None):
        self.passages = passages or []

    @classmethod
    def from_kbs(cls, kbs: list[EvidenceKB]) -> DistractorPool:
        seen: set[str] = set()
        out = []
        for kb in kbs:
            for title, sentences in kb.pages.items():
                if title not in seen:
                    seen.add(title)
                    out.append(Passage(title, list(sentences)))
        return cls(out)

    def sample(self, rng: random.Random, k: int, exclude: set[str]) -> list[Passage]:
        if not self.passages or k <= 0:
            return []
        picks = rng.sample(range(len(self.passages)), min(len(self.passages), k + len(exclude)))
        out = [self.passages[i] for i in picks if self.passages[i].title not in exclude]
        return out[:k]


class PassageIndex:
    """BM25 over a few passages in memory (one synthesis episode's collection, with `bm25.Okapi`: the
    scores of rank_bm25 without its per-index setup), with page lookup by title. A whole corpus is
    searched by an on-disk index instead (`mtr_hpc.retrievers`)."""

    def __init__(self, passages: list[Passage], ranked: bool = True):
        self.passages = passages
        texts = [p.title + " " + " ".join(p.sentences) for p in passages] if ranked else []
        self._bm25 = Okapi([_document(t) for t in texts]) if ranked and passages else None
        self._titles: dict[str, int] = {}
        self._loose: dict[str, int] = {}
        for i, p in enumerate(passages):
            self._titles.setdefault(norm_key(p.title), i)
            self._loose.setdefault(loose_key(p.title), i)

    @classmethod
    def titles_only(cls, passages: list[Passage]) -> PassageIndex:
        """`find_page` alone: `rank` scores every passage 0."""
        return cls(passages, ranked=False)

    def scores(self, query: str) -> list[float]:
        q = tokens(query)
        if not q or self._bm25 is None:
            return [0.0] * len(self.passages)
        return self._bm25.scores(q)

    def rank(self, query: str, top_k: int, exclude: Iterable[str] = ()) -> list[Passage]:
        if not self.passages or top_k <= 0:
            return []
        scores = self.scores(query)
        skip = set(exclude)
        order = sorted(range(len(self.passages)), key=lambda i: (-scores[i], i))
        out = []
        for i in order:
            if self.passages[i].title not in skip:
                out.append(self.passages[i])
                if len(out) == top_k:
                    break
        return out

    def find_page(self, title: str) -> Passage | None:
        i = self._titles.get(norm_key(title))
        if i is None:
            i = self._loose.get(loose_key(title))
        return None if i is None else self.passages[i]


def example_corpus(
    kb: EvidenceKB, pool: DistractorPool | None, rng: random.Random, n_distractors: int
) -> list[Passage]:
    own = [Passage(t, s) for t, s in kb.pages.items()]
    extra = pool.sample(rng, n_distractors, set(kb.pages)) if pool is not None else []
    corpus = own + extra
    rng.shuffle(corpus)
    return corpus
