"""Small text helpers shared by the agents: normalization for lookups, tokens for BM25, names for tools."""

from __future__ import annotations

import re
import string
from functools import lru_cache

_PAREN_RE = re.compile(r"\s*\([^)]*\)")
_PUNCT = str.maketrans("", "", string.punctuation)
_TOKEN_RE = re.compile(r"[a-z0-9]+")
_REF_RE = re.compile(r"#(\d+)")
_NAME_BAD_RE = re.compile(r"[^a-z0-9]+")
STOPWORDS = frozenset(
    "a an the of in on at to for by with from and or is was were are be been who what which when where "
    "how did does do that this as his her its their it".split()
)


_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_RE.split(text.strip()) if s.strip()]


def states(text: str, value: str) -> bool:
    """Whether `text` contains `value` as whole words (case and punctuation aside)."""
    key = norm_key(value)
    return bool(key) and f" {key} " in f" {norm_key(text)} "


_QUOTES_RE = re.compile(r'["\u201c\u201d]')


def search_query(text: str) -> str:
    """A question as a search query: without double quotes, which search ignores and which a small model
    copies into its call's JSON unescaped (the commonest broken call in the demo's evaluation)."""
    return " ".join(_QUOTES_RE.sub(" ", text).split())


def _norm_key(text: str) -> str:
    return " ".join(text.lower().translate(_PUNCT).split())


# Keys of the same titles and entities are asked for by the KB, the plans and every lookup call; long
# texts (whole pages) are not worth keeping.
_norm_key_cached = lru_cache(maxsize=1 << 14)(_norm_key)
_SHORT = 200


def norm_key(text: str) -> str:
    """Lookup key of an entity or page title: case, punctuation and spacing do not matter."""
    return _norm_key_cached(text) if len(text) <= _SHORT else _norm_key(text)


def loose_key(text: str) -> str:
    """`norm_key` without parentheticals: "Kiss Me Kate (film)" finds "Kiss Me Kate"."""
    return _loose_key_cached(text) if len(text) <= _SHORT else _norm_key(_PAREN_RE.sub("", text))


@lru_cache(maxsize=1 << 14)
def _loose_key_cached(text: str) -> str:
    return _norm_key(_PAREN_RE.sub("", text))


def tokens(text: str) -> list[str]:
    """BM25 tokens: lowercase alphanumeric words without stopwords."""
    return [t for t in _TOKEN_RE.findall(text.lower()) if t not in STOPWORDS]


@lru_cache(maxsize=1 << 13)
def token_set(sentence: str) -> frozenset[str]:
    """The distinct `tokens` of a sentence; the same evidence sentences are ranked against every query."""
    return frozenset(tokens(sentence))


def substitute_refs(text: str, answers: list[str]) -> str:
    """Replace MuSiQue's "#k" (1-based) with the k-th earlier sub-answer; unknown refs stay."""

    def repl(m: re.Match) -> str:
        k = int(m.group(1)) - 1
        return answers[k] if 0 <= k < len(answers) else m.group(0)

    return _REF_RE.sub(repl, text)


def snake(text: str, max_len: int = 48) -> str:
    """`date of death` -> `date_of_death` (ASCII, lower case, at most `max_len` characters)."""
    name = _NAME_BAD_RE.sub("_", text.lower()).strip("_")
    return name[:max_len].rstrip("_") or "value"


def as_text(value) -> str:
    """A sub-answer as one string (Bamboogle gives lists of aliases; the first is the answer)."""
    if isinstance(value, list | tuple):
        return str(value[0]) if value else ""
    return "" if value is None else str(value)


def join_sentences(sentences: list[str]) -> str:
    return " ".join(s.strip() for s in sentences if s and s.strip())
