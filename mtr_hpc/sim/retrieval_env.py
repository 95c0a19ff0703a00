"""The `retrieval` environment: real tools over a local passage corpus, in place of simulated ones.

`search(query, top_k)` ranks the whole corpus with rank_bm25's `BM25Okapi` (the grounded simulator
uses the same scores per example, through its own faster index) and `open_page(title)` returns a
page's sentences. The paper simulates every tool and names live tools as future work; this environment is that hybrid setting:
the policy trained on simulated tools is evaluated against a real (if small) search engine.

`RetrievalActor` answers like a ToolActor (`episode(example, kb, toolset, seed)`, then `call(episode,
name, args)` returning a JSON observation valid against the tool's `x-returns`, typed error
observations instead of exceptions); `RetrievalSimulator` opens its episodes. Unlike the ToolActor,
nothing depends on the example: every question searches one corpus.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from ..data import load_corpus
from ..data.corpus import CorpusResult
from ..data.example import QAExample
from ..errors import DataError
from ..toolspec import ToolRegistry
from .config import RetrievalEnvConfig
from .evidence import EvidenceKB
from .retrieval import Passage as IndexedPassage
from .retrieval import PassageIndex
from .schemas import error_observation
from .text import loose_key, norm_key
from .toolactor import ToolState, precheck, remember
from .toolmaker import ToolSet
from .utility_tools import OPEN_PAGE, SEARCH

_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
MAX_TOP_K = 10  # the bound `search` declares


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_RE.split(text.strip()) if s.strip()]


class CorpusIndex:
    """Pages (title -> sentences; passages sharing a title are one page) and a BM25 index over them."""

    def __init__(self, corpus: CorpusResult):
        self.pages: dict[str, list[str]] = {}
        for p in corpus.passages:
            self.pages.setdefault(p.title, []).extend(split_sentences(p.text) or [p.text])
        if not self.pages:
            raise DataError(corpus.path, None, None, "the corpus holds no passages")
        self.path = corpus.path
        self.n_skipped = len(corpus.skipped)
        self._index = PassageIndex([IndexedPassage(t, s) for t, s in self.pages.items()], library=True)
        self._titles: dict[str, str] = {}
        self._loose: dict[str, str] = {}
        for title in self.pages:
            self._titles.setdefault(norm_key(title), title)
            self._loose.setdefault(loose_key(title), title)

    @classmethod
    def load(cls, path: str | Path, skip_bad: bool = False) -> CorpusIndex:
        return cls(load_corpus(path, skip_bad=skip_bad))

    def search(self, query: str, top_k: int, snippet_sentences: int) -> dict[str, Any]:
        return {"query": query, "results": self._index.search(query, top_k, snippet_sentences)}

    def find_page(self, title: str) -> str | None:
        if title in self.pages:
            return title
        return self._titles.get(norm_key(title)) or self._loose.get(loose_key(title))

    def open_page(self, title: str) -> dict[str, Any]:
        found = self.find_page(title)
        return {"title": found or title, "found": found is not None, "sentences": self.pages.get(found, [])}


def retrieval_toolset() -> ToolSet:
    """The tools the retrieval environment answers: `search` and `open_page` (the utility interfaces)."""
    return ToolSet([SEARCH, OPEN_PAGE], templated={"search", "open_page"})


class RetrievalActor:
    """Answers `search` / `open_page` calls from a `CorpusIndex`; drop-in for `ToolActor`."""

    def __init__(self, index: CorpusIndex, cfg: RetrievalEnvConfig | None = None):
        self.index = index
        self.cfg = cfg or RetrievalEnvConfig()
        self.stats: Counter[str] = Counter()
        self._registries: dict[tuple[int, ...], ToolRegistry] = {}
        self._keep: list[ToolSet] = []  # keeps registry keys (object ids) valid

    def episode(self, example: QAExample, kb: EvidenceKB | None, toolset: ToolSet, seed: int) -> ToolState:
        key = tuple(id(t) for t in toolset.tools)
        registry = self._registries.get(key)
        if registry is None:
            registry = self._registries[key] = ToolRegistry(toolset.tools, strict=False)
            self._keep.append(toolset)
        return ToolState(example, kb or EvidenceKB(), toolset, registry, seed)

    async def acall(self, ep: ToolState, name: str, args: Any) -> dict[str, Any]:
        return self.call(ep, name, args)

    def call(self, ep: ToolState, name: str, args: Any) -> dict[str, Any]:
        early, args_json = precheck(ep, name, args, self.stats)
        if early is not None:
            return early
        obs = self._answer(name, args)
        remember(ep, name, args, args_json, obs)
        return obs

    def _answer(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        if name == "search":
            top_k = min(int(args.get("top_k") or self.cfg.top_k), MAX_TOP_K)
            return self.index.search(str(args["query"]), top_k, self.cfg.snippet_sentences)
        if name == "open_page":
            return self.index.open_page(str(args["title"]))
        self.stats["unsupported"] += 1
        return error_observation("unsupported", f"the retrieval environment has no tool {name!r}")
