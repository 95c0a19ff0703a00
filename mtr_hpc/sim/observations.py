"""What the policy reads from search-like tools: one format, one implementation, every environment.

The grounded simulator and the `retrieval` environment both answer `search`, `open_page` and the
ToolMaker's relation tools here, over a `Retriever` (`sim/retrieval.py`): the example's own pages plus
distractors for the simulator, a whole corpus for the real engine. So what a policy reads in training
has the format and length of what it reads against the real engine (ZeroSearch's lesson: a simulator
that does not match the real engine's documents lost 2-4 EM points there).

- `search(query, top_k)` -> `{"query", "results": [{"title", "snippet"}]}`: the `top_k` best passages,
  each cut to `passage_words` words (a longer passage keeps the sentences that best overlap the query,
  in page order), as Search-R1's top-3 100-word passages.
- A relation tool `get_<relation>(entity)` is a structured search over the same collection: the page
  titled `entity` first, when there is one, then the best passages for "<entity> <relation>", in the
  same results format plus `entity` and `relation`. It names what to look up; the policy still reads the
  value off a real page. (The paper's lookups return the value itself; a real engine has no such tool,
  so a policy trained on it meets a different tool at test time.)
- `open_page(title)` -> `{"title", "found", "sentences"}`, up to `page_words` words.

Noise, simulators only: a call may hold the episode's gold pages back (`held_back`), so the results
miss the evidence as a real engine's do; the caller draws it (`hold_back`).
"""

from __future__ import annotations

import random
from typing import Any

from ..toolspec import canonical_json
from .config import ResultsConfig
from .retrieval import Passage, Retriever
from .text import token_set, tokens


def _words(sentence: str) -> int:
    return len(sentence.split())


def passage_text(passage: Passage, query: str, max_words: int) -> str:
    """The passage's text, or, when longer than `max_words`, its sentences that best overlap the query
    (the first sentence, which names the subject, breaking ties), in page order, within `max_words`."""
    sents = [s.strip() for s in passage.sentences if s.strip()]
    if sum(_words(s) for s in sents) <= max_words:
        return " ".join(sents)
    q = set(tokens(query))
    ranked = sorted(range(len(sents)), key=lambda i: (-len(q.intersection(token_set(sents[i]))), i))
    keep, used = [], 0
    for i in ranked:
        n = _words(sents[i])
        if used + n > max_words:
            if not keep:  # one sentence longer than the budget: its first words
                return " ".join(sents[i].split()[:max_words])
            continue
        keep.append(i)
        used += n
    return " ".join(sents[i] for i in sorted(keep))


def results(passages: list[Passage], query: str, fmt: ResultsConfig) -> list[dict[str, str]]:
    return [{"title": p.title, "snippet": passage_text(p, query, fmt.passage_words)} for p in passages]


def search_payload(
    index: Retriever, query: str, top_k: int, fmt: ResultsConfig, held_back: frozenset[str] = frozenset()
) -> dict[str, Any]:
    return {"query": query, "results": results(index.rank(query, top_k, held_back), query, fmt)}


def lookup_query(entity: str, relation: str) -> str:
    return f"{entity} {relation}"


def lookup_payload(
    index: Retriever, entity: str, relation: str, fmt: ResultsConfig, held_back: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """A relation tool's results: the entity's own page first, then BM25 on "<entity> <relation>"."""
    query = lookup_query(entity, relation)
    page = index.find_page(entity) if entity.strip() else None
    first = [page] if page is not None and page.title not in held_back else []
    rest = index.rank(query, fmt.top_k - len(first), held_back | {p.title for p in first})
    return {"entity": entity, "relation": relation, "results": results(first + rest, query, fmt)}


def page_payload(index: Retriever, title: str, fmt: ResultsConfig) -> dict[str, Any]:
    page = index.find_page(title) if title.strip() else None
    if page is None:
        return {"title": title, "found": False, "sentences": []}
    out, used = [], 0
    for s in page.sentences:
        if used + _words(s) > fmt.page_words and out:
            break
        out.append(s)
        used += _words(s)
    return {"title": page.title, "found": True, "sentences": out}


def hold_back(
    noise: float, seed: int, example_id: str, name: str, args: Any, gold: list[str]
) -> frozenset[str]:
    """The gold pages a simulated call hides: all of them with probability `noise`, drawn from the
    call itself (seed, example, tool, canonical arguments), so a replay draws the same, and a policy
    that rephrases its query draws again, as it would get other results from a real engine."""
    if noise <= 0 or not gold:
        return frozenset()
    u = random.Random(f"{seed}\x00{example_id}\x00{name}\x00{canonical_json(args)}").random()
    return frozenset(gold) if u < noise else frozenset()


def first_string_arg(args: dict[str, Any]) -> str:
    for value in args.values():
        if isinstance(value, str):
            return value
    return ""


def answer_call(
    index: Retriever,
    name: str,
    args: dict[str, Any],
    relation: str | None,
    fmt: ResultsConfig,
    held_back: frozenset[str] = frozenset(),
) -> dict[str, Any] | None:
    """The observation of a `search`, `open_page` or relation-tool call; None for any other tool."""
    if relation is not None:
        return lookup_payload(index, first_string_arg(args), relation, fmt, held_back)
    if name == "search":
        top_k = min(int(args.get("top_k") or fmt.top_k), 10)
        return search_payload(index, str(args.get("query", "")), top_k, fmt, held_back)
    if name == "open_page":
        return page_payload(index, str(args.get("title", "")), fmt)
    return None
