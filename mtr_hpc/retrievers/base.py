"""What every search engine behind the `retrieval` environment shares: a batched search returning
scored documents, and the `Retriever` methods the tools read (`sim.retrieval.Retriever`) on top of it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..sim.retrieval import Passage
from ..sim.text import split_sentences


@dataclass
class Hit:
    doc: dict[str, str]  # {"id", "title", "text"}
    score: float


def doc_passage(doc: dict[str, str]) -> Passage:
    return Passage(doc["title"], split_sentences(doc["text"]) or [doc["text"]])


def page_of(docs: list[dict[str, str]]) -> Passage | None:
    """The passages of one page, in order, as one passage of their sentences."""
    if not docs:
        return None
    return Passage(docs[0]["title"], [s for d in docs for s in doc_passage(d).sentences])


class SearchEngine:
    """Subclasses give `search_many`, `find_page`, `max_k` (the most hits one query may ask for) and
    `path` (what the engine searches, for reports)."""

    max_k: int
    path: str
    n_skipped: int = 0

    def search_many(self, queries: list[str], top_k: int) -> list[list[Hit]]:
        raise NotImplementedError

    def warm_up(self) -> None:
        """Whatever the first searches would pay for (compilation), paid now."""

    def find_page(self, title: str) -> Passage | None:
        raise NotImplementedError

    def rank_many(self, queries: list[str], top_k: int, exclude: Iterable[str] = ()) -> list[list[Passage]]:
        """Each query's `top_k` passages, best first: one request for the batch."""
        skip = set(exclude)
        if not skip:
            return [[doc_passage(h.doc) for h in hits] for hits in self.search_many(queries, top_k)]
        return [self.rank(q, top_k, skip) for q in queries]

    def rank(self, query: str, top_k: int, exclude: Iterable[str] = ()) -> list[Passage]:
        """The `top_k` best passages none titled in `exclude`: a page of wiki-18 is several passages,
        so excluding a title may drop several hits; the search widens until enough remain."""
        skip = set(exclude)
        k = min(top_k + 2 * len(skip), self.max_k)
        while True:
            hits = self.search_many([query], k)[0]
            kept = [h for h in hits if h.doc["title"] not in skip][:top_k]
            if len(kept) == top_k or len(hits) < k or k >= self.max_k:
                return [doc_passage(h.doc) for h in kept]
            k = min(k * 4, self.max_k)
