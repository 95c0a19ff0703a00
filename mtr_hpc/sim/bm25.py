"""Okapi BM25 in plain Python, score for score identical to rank_bm25's `BM25Okapi`.

rank_bm25 builds the whole index (a term-frequency dict per document, a document frequency and an idf
per word of the corpus) for every new corpus, and every grounded episode has a new corpus (its own pages
plus seeded distractors, in seeded order). Here the per-document term frequencies are taken from a cache
keyed by the document's tokens, so a passage seen in an earlier episode costs nothing, and the idf of a
word is computed only when a query asks for it. The corpus-wide average idf (the floor of words that
occur in more than half the documents) is computed only when a query word needs that floor.

Every score is the same IEEE double as rank_bm25's: the same operations in the same order (its numpy
arithmetic is elementwise double arithmetic), only the additions of exact zeros (query words a
document lacks) are skipped, which change no sum.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from functools import reduce
from itertools import chain
from operator import add

K1 = 1.5
B = 0.75
EPSILON = 0.25


class TermCounts:
    """One tokenized document: its length and the count of each token, in order of first occurrence
    (the order of rank_bm25's per-document dicts, which fixes the order of its idf sum)."""

    __slots__ = ("freqs", "length")

    def __init__(self, tokens: Sequence[str]):
        freqs: dict[str, int] = {}
        for word in tokens:
            freqs[word] = freqs.get(word, 0) + 1
        self.freqs = freqs
        self.length = len(tokens)


class Okapi:
    """BM25Okapi(k1=1.5, b=0.75, epsilon=0.25) over documents given as `TermCounts`."""

    __slots__ = ("_freqs", "_norm", "_n", "_idf", "_floor")

    def __init__(self, docs: Sequence[TermCounts]):
        if not docs:
            raise ValueError("BM25 needs at least one document")
        self._freqs = [d.freqs for d in docs]
        self._n = len(docs)
        lengths = [d.length for d in docs]
        avgdl = sum(lengths) / self._n
        # rank_bm25: k1 * (1 - b + b * doc_len / avgdl), evaluated left to right per document.
        self._norm = [K1 * (1 - B + B * dl / avgdl) for dl in lengths]
        self._idf: dict[str, tuple[float, list[tuple[int, int]]]] = {}
        self._floor: float | None = None

    def _raw_idf(self, df: int) -> float:
        return math.log(self._n - df + 0.5) - math.log(df + 0.5)

    def _epsilon_floor(self) -> float:
        """epsilon * mean raw idf over the corpus vocabulary, summed in rank_bm25's order."""
        if self._floor is None:
            # Document frequencies in order of first occurrence over the corpus (rank_bm25's `nd`).
            df = Counter(chain.from_iterable(self._freqs))
            # A raw idf depends on the document frequency alone: one log pair per distinct frequency.
            by_df = {count: self._raw_idf(count) for count in set(df.values())}
            # reduce(add) adds left to right like rank_bm25's loop (sum() may compensate rounding).
            total = reduce(add, map(by_df.__getitem__, df.values()), 0.0)
            self._floor = EPSILON * (total / len(df))
        return self._floor

    def _postings(self, word: str) -> tuple[float, list[tuple[int, int]]]:
        """(idf, [(document index, term count)]) of a word, computed on first use."""
        hit = self._idf.get(word)
        if hit is None:
            postings = [(i, f) for i, freqs in enumerate(self._freqs) if (f := freqs.get(word))]
            idf = self._raw_idf(len(postings)) if postings else 0.0
            if idf < 0:
                idf = self._epsilon_floor()
            hit = self._idf[word] = (idf, postings)
        return hit

    def idf(self, word: str) -> float:
        """The word's idf as rank_bm25 stores it (0.0 for a word of no document)."""
        return self._postings(word)[0]

    def scores(self, query: Sequence[str]) -> list[float]:
        """One score per document, as `BM25Okapi.get_scores(query)`."""
        out = [0.0] * self._n
        norm = self._norm
        k1_plus_1 = K1 + 1
        for word in query:
            idf, postings = self._postings(word)
            if not idf:
                continue
            for i, f in postings:
                out[i] += idf * (f * k1_plus_1 / (f + norm[i]))
        return out
