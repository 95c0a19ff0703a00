"""`EvidenceKB`: one example's evidence as pages, relation facts and answered sub-questions.

The grounded ToolActor answers every call from this structure and the grounded AutoAgent plans over
it, so the two agree by construction. Sources (design §3): context paragraphs become pages; evidence
triples and MuSiQue's relation-style steps ("Green >> performer") become facts, each also written as a
sentence on the subject's page; natural-language sub-questions (MuSiQue, Bamboogle) become short
passages that hold their sub-answer, found by `search`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..data.example import QAExample
from .text import as_text, join_sentences, loose_key, norm_key, substitute_refs

_CAPS_RE = re.compile(r"\b([A-Z][\w'&.-]*(?:\s+(?:of|the|de|and|&)?\s*[A-Z0-9][\w'&.-]*)*)")
_QWORDS = frozenset("What Who Which When Where How Why In On At The Is Was Are Were Did Does Do".split())


@dataclass
class Step:
    """One resolved hop: a relation lookup (`entity`, `relation`) or a sub-question (`question`)."""

    answer: str
    entity: str | None = None
    relation: str | None = None
    question: str | None = None
    title: str | None = None
    aliases: list[str] = field(default_factory=list)

    def aliases_match(self, gold_keys: set[str]) -> bool:
        return any(norm_key(a) in gold_keys for a in self.aliases)


@dataclass
class EvidenceKB:
    pages: dict[str, list[str]] = field(default_factory=dict)
    facts: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    triples: list[tuple[str, str, str]] = field(default_factory=list)
    supporting: list[str] = field(default_factory=list)
    supporting_facts: list[tuple[str, int]] = field(default_factory=list)
    # Pages written from facts and sub-answers ("The director of X is Y."), not read from a source.
    synthetic: set[str] = field(default_factory=set)
    corpus_applied: bool = False
    _titles: dict[str, str] = field(default_factory=dict)
    _loose_titles: dict[str, str] = field(default_factory=dict)
    _loose_entities: dict[str, str] = field(default_factory=dict)

    def add_sentence(self, title: str, sentence: str) -> None:
        if title not in self.pages:
            self.pages[title] = []
            self._titles.setdefault(norm_key(title), title)
            self._loose_titles.setdefault(loose_key(title), title)
        if sentence not in self.pages[title]:
            self.pages[title].append(sentence)

    def add_fact(self, entity: str, relation: str, value: str) -> None:
        values = self.facts.setdefault((norm_key(entity), relation), [])
        if value not in values:
            values.append(value)
        self._loose_entities.setdefault(loose_key(entity), norm_key(entity))
        self._synthetic_sentence(entity, f"The {relation} of {entity} is {value}.")

    def _synthetic_sentence(self, title: str, sentence: str) -> None:
        if title not in self.pages:
            self.synthetic.add(title)
        self.add_sentence(title, sentence)

    def gold_titles(self) -> list[str]:
        """The pages that hold the answer's evidence: supporting paragraphs, the pages of the facts'
        subjects and of the sub-questions; what a noisy search holds back, and what recall counts."""
        titles = [
            *self.supporting,
            *(s for s, _, _ in self.triples),
            *(st.title for st in self.steps if st.title),
        ]
        out = []
        for t in titles:
            found = self.find_page(t)
            if found is not None and found not in out:
                out.append(found)
        return out

    def use_pages(self, lookup) -> int:
        """Replace synthetic pages, and add supporting pages the record lacks, with real ones:
        `lookup(title)` gives a page's sentences or None. Returns how many pages were taken."""
        wanted = [*self.synthetic, *(t for t in self.supporting if t not in self.pages)]
        wanted += [t for t, _ in self.supporting_facts if t not in self.pages]
        taken = 0
        for title in dict.fromkeys(wanted):
            sentences = lookup(title)
            if not sentences:
                continue
            self.pages.pop(title, None)
            self.synthetic.discard(title)
            for sentence in sentences:
                self.add_sentence(title, sentence)
            if title not in self.supporting and any(t == title for t, _ in self.supporting_facts):
                self.supporting.append(title)
            taken += 1
        return taken

    def lookup(self, entity: str, relation: str) -> list[str]:
        """Values of `relation` for `entity` (exact, then ignoring case/punctuation/parentheticals)."""
        key = norm_key(entity)
        if (key, relation) in self.facts:
            return self.facts[(key, relation)]
        alt = self._loose_entities.get(loose_key(entity))
        return self.facts.get((alt, relation), []) if alt else []

    def find_page(self, title: str) -> str | None:
        return self._titles.get(norm_key(title)) or self._loose_titles.get(loose_key(title))

    def passages(self) -> list[tuple[str, str]]:
        return [(t, join_sentences(s)) for t, s in self.pages.items()]


def parse_relation_step(question: str) -> tuple[str, str] | None:
    """MuSiQue's "Entity >> relation" form -> (entity, relation); None for a natural-language step."""
    if ">>" not in question:
        return None
    entity, _, relation = question.rpartition(">>")
    entity, relation = entity.strip(), relation.strip()
    if not entity or not relation or ">>" in entity:
        return None
    return entity, relation


def guess_title(question: str, fallback: str) -> str:
    """A page title for a natural-language sub-question: its longest capitalized span."""
    spans = [s.strip() for s in _CAPS_RE.findall(question)]
    spans = [s for s in spans if s and s.split()[0] not in _QWORDS or len(s.split()) > 1]
    spans = [" ".join(w for w in s.split() if w not in _QWORDS) or s for s in spans]
    spans = [s for s in spans if s]
    return max(spans, key=len) if spans else fallback


def _add_decomposition(kb: EvidenceKB, steps: list[dict]) -> None:
    answers: list[str] = []
    for raw in steps:
        q = str(raw.get("question", ""))
        answer = as_text(raw.get("answer"))
        raw_aliases = raw.get("answers") if isinstance(raw.get("answers"), list) else raw.get("answer")
        aliases = (
            [str(a) for a in raw_aliases]
            if isinstance(raw_aliases, list | tuple) and raw_aliases
            else [answer]
        )
        resolved = substitute_refs(q, answers)
        rel = parse_relation_step(resolved)
        doc = str(raw.get("document_id") or "")
        doc_title = doc.rsplit("_", 1)[0] if doc else ""
        if rel is not None:
            entity, relation = rel
            for alias in aliases:
                kb.add_fact(entity, relation, alias)
            kb.steps.append(Step(answer, entity=entity, relation=relation, title=entity, aliases=aliases))
        else:
            title = doc_title or guess_title(resolved, answer)
            also = f" (also: {'; '.join(aliases[1:])})" if len(aliases) > 1 else ""
            kb._synthetic_sentence(title, f"{resolved.rstrip('?').strip()}? {answer}{also}.")
            kb.steps.append(Step(answer, question=resolved, title=title, aliases=aliases))
        answers.append(answer)


def build_kb(example: QAExample) -> EvidenceKB:
    """Everything the grounded agents know about `example`."""
    kb = EvidenceKB()
    ev = example.evidence or {}
    for para in ev.get("paragraphs") or []:
        title = str(para.get("title", ""))
        sentences = para.get("sentences") or [para.get("text", "")]
        for s in sentences:
            if str(s).strip():
                kb.add_sentence(title, str(s).strip())
        if para.get("is_supporting"):
            kb.supporting.append(title)
    for fact in ev.get("supporting_facts") or []:
        if len(fact) != 2:
            continue
        title, idx = str(fact[0]), fact[1]
        kb.supporting_facts.append((title, idx))
        if title in kb.pages and title not in kb.supporting:
            kb.supporting.append(title)
    for triple in ev.get("triples") or []:
        if len(triple) == 3:
            s, r, o = (str(x) for x in triple)
            kb.triples.append((s, r, o))
            kb.add_fact(s, r, o)
    if ev.get("decomposition"):
        _add_decomposition(kb, list(ev["decomposition"]))
    return kb
