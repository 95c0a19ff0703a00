"""The `retrieval` environment: real tools over a local passage corpus, in place of simulated ones.

The policy gets the tools it was trained with (the ToolMaker's, `tools: toolmaker`), answered by a real
search engine (`mtr_hpc.retrievers`: an on-disk BM25 index, or a retrieval server): `search` ranks the
whole corpus, a relation tool reads the entity's page and the best passages for "<entity> <relation>",
`open_page` returns a page's sentences.
The format is the simulators' (`sim/observations.py`); only the collection is real. `tools: search`
offers `search` and `open_page` alone, the tool set of live-search agents (Search-R1, ZeroSearch).
The paper simulates every tool and names live tools as future work; this environment is that setting:
the policy trained on simulated tools is evaluated against a real (if small) search engine.

`RetrievalActor` answers like a ToolActor (`episode(example, kb, toolset, seed)`, then `call(episode,
name, args)` returning a JSON observation valid against the tool's `x-returns`, typed error
observations instead of exceptions). Unlike the ToolActor, nothing depends on the example: every
question searches one corpus, and no evidence is held back.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..data import load_corpus
from ..data.corpus import CorpusResult
from ..data.example import QAExample
from ..errors import DataError
from ..toolspec import ToolRegistry
from .config import ResultsConfig, RetrievalEnvConfig
from .evidence import EvidenceKB
from .observations import answer_call, first_string_arg, lookup_query
from .retrieval import Passage, PassageIndex, Retriever
from .schemas import error_observation
from .text import split_sentences
from .toolactor import ToolState, precheck, remember
from .toolmaker import ToolSet
from .utility_tools import OPEN_PAGE, SEARCH


@dataclass(eq=False)
class CorpusPages:
    """A corpus as pages (passages sharing a title are one page, split into sentences)."""

    passages: list[Passage]
    path: str
    n_skipped: int = 0

    @classmethod
    def from_corpus(cls, corpus: CorpusResult) -> CorpusPages:
        pages: dict[str, list[str]] = {}
        for p in corpus.passages:
            pages.setdefault(p.title, []).extend(split_sentences(p.text) or [p.text])
        if not pages:
            raise DataError(corpus.path, None, None, "the corpus holds no passages")
        return cls([Passage(t, s) for t, s in pages.items()], corpus.path, len(corpus.skipped))


def corpus_path(name: str) -> Path:
    """`sample` (the corpus shipped in the package) or a path; a missing file is a `DataError`."""
    from ..retrievers.open import corpus_path as path_of

    return path_of(name)


@lru_cache(maxsize=4)
def corpus_pages(path: str, skip_bad: bool = False) -> CorpusPages:
    """The pages of the corpus file at `path` (read once per process: every benchmark's simulator and
    the retrieval environment of a run share it)."""
    return CorpusPages.from_corpus(load_corpus(path, skip_bad=skip_bad))


@lru_cache(maxsize=4)
def page_index(pages: CorpusPages) -> PassageIndex:
    """Title lookup over a corpus's pages (no BM25 index: the simulator only opens pages by title)."""
    return PassageIndex.titles_only(pages.passages)


def evidence_pages(example: QAExample) -> list[str]:
    """The titles of the pages that state an example's evidence, as its source names them: HotpotQA's
    and 2Wiki's supporting facts, the paragraph each MuSiQue hop was written from (`document_id`
    without its paragraph number). Empty when the source names none (Bamboogle)."""
    ev = example.evidence
    titles = [str(t) for t, _ in ev.get("supporting_facts") or []]
    for step in ev.get("decomposition") or []:
        doc = step.get("document_id") if isinstance(step, dict) else None
        if isinstance(doc, str) and doc:
            titles.append(re.sub(r"_\d+$", "", doc))
    return list(dict.fromkeys(titles))


def corpus_coverage(examples: list[QAExample], index: Retriever) -> float:
    """The share of `examples` whose evidence pages the index all holds: the most a policy can answer
    from the pages themselves (a question whose source names no pages counts as not covered)."""
    if not examples:
        return 0.0
    covered = 0
    for ex in examples:
        titles = evidence_pages(ex)
        covered += bool(titles) and all(index.find_page(t) is not None for t in titles)
    return covered / len(examples)


def round_query(
    toolset: ToolSet, name: str, args: dict[str, Any], fmt: ResultsConfig
) -> tuple[str, int] | None:
    """(query, top_k) a call will search, for fetching a round's searches in one batch; None for a
    call that searches nothing (`open_page`, `compare`, ...)."""
    relation = toolset.relation_of.get(name)
    if relation is not None:
        return lookup_query(first_string_arg(args), relation), fmt.top_k
    if name == "search":
        try:
            top_k = min(int(args.get("top_k") or fmt.top_k), 10)
        except (TypeError, ValueError):
            return None
        return str(args.get("query", "")), top_k
    return None


def retrieval_toolset() -> ToolSet:
    """`search` and `open_page` alone (the utility interfaces): `tools: search`."""
    return ToolSet([SEARCH, OPEN_PAGE], templated={"search", "open_page"})


class RetrievalActor:
    """Answers `search`, `open_page` and relation-tool calls from a search engine; drop-in for `ToolActor`."""

    def __init__(self, index: Retriever, cfg: RetrievalEnvConfig | None = None):
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

    def call(self, ep: ToolState, name: str, args: Any, index: Retriever | None = None) -> dict[str, Any]:
        """The observation of one call; `index` stands in for the engine (a round's prefetched results)."""
        early, args_json = precheck(ep, name, args, self.stats)
        if early is not None:
            return early
        if name in ("compare", "calculate"):
            from .utility_tools import run_computed

            obs = run_computed(name, args)
        else:
            relation = ep.toolset.relation_of.get(name)
            obs = answer_call(index or self.index, name, args, relation, self.cfg.results)
        if obs is None:
            self.stats["unsupported"] += 1
            obs = error_observation("unsupported", f"the retrieval environment has no tool {name!r}")
        remember(ep, name, args, args_json, obs)
        return obs
