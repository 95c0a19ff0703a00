"""BM25 passage retrieval for the grounded `search` tool (Okapi BM25, rank_bm25's scores: `bm25.py`).

The corpus of one example is its own pages (context paragraphs, fact and sub-answer passages) plus
seeded distractor passages of other examples, so a search returns the evidence among plausible noise.
Snippets are the passage's sentences that best overlap the query, in page order.

Every episode has its own corpus, but its passages recur (the same pages in every seed's episode, the
same distractor pool for a whole run), so the tokens of passages (and of sentences, `token_set`) are
memoised by text.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

from .bm25 import Okapi, TermCounts
from .evidence import EvidenceKB
from .text import token_set, tokens

_CACHE_SIZE = 1 << 13


@lru_cache(maxsize=_CACHE_SIZE)
def _document(text: str) -> TermCounts:
    # "_" stands in for a passage without tokens: rank_bm25 divides by the mean document length.
    return TermCounts(tokens(text) or ["_"])


@dataclass
class Passage:
    title: str
    sentences: list[str]


class DistractorPool:
    """Passages of many examples; each example draws its distractors from it with its own seed."""

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
    """BM25 over passages. `library=True` ranks with rank_bm25 itself (the real-corpus retrieval
    environment of eval, thousands of passages); the default uses `bm25.Okapi`, the same scores without
    rank_bm25's per-index setup, which dominates for the ten-odd passages of one synthesis episode."""

    def __init__(self, passages: list[Passage], library: bool = False):
        self.passages = passages
        texts = [p.title + " " + " ".join(p.sentences) for p in passages]
        self._bm25 = self._lib = None
        if passages and library:
            from rank_bm25 import BM25Okapi

            self._lib = BM25Okapi([tokens(t) or ["_"] for t in texts])
        elif passages:
            self._bm25 = Okapi([_document(t) for t in texts])

    def search(self, query: str, top_k: int, snippet_sentences: int) -> list[dict[str, str]]:
        if self._bm25 is None and self._lib is None:
            return []
        q = tokens(query)
        if not q:
            scores = [0.0] * len(self.passages)
        elif self._lib is not None:
            scores = self._lib.get_scores(q).tolist()
        else:
            scores = self._bm25.scores(q)
        order = sorted(range(len(self.passages)), key=lambda i: (-scores[i], i))[:top_k]
        return [
            {"title": self.passages[i].title, "snippet": snippet(self.passages[i], q, snippet_sentences)}
            for i in order
        ]


def snippet(passage: Passage, query_tokens: list[str], n: int) -> str:
    sents = passage.sentences
    if len(sents) <= n:
        return " ".join(s.strip() for s in sents)
    q = set(query_tokens)
    overlap = [len(q.intersection(token_set(s))) for s in sents]
    ranked = sorted(range(len(sents)), key=lambda i: (-overlap[i], i))[:n]
    return " ".join(sents[i].strip() for i in sorted(ranked))


def example_corpus(
    kb: EvidenceKB, pool: DistractorPool | None, rng: random.Random, n_distractors: int
) -> list[Passage]:
    own = [Passage(t, s) for t, s in kb.pages.items()]
    extra = pool.sample(rng, n_distractors, set(kb.pages)) if pool is not None else []
    corpus = own + extra
    rng.shuffle(corpus)
    return corpus
