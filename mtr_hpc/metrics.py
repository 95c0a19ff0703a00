"""Answer metrics: SQuAD-normalized exact match and token F1, per benchmark convention.

Owns the per-example scoring rules of the four benchmarks' official evaluators and the aggregation of
per-example scores into a `ScoreReport`. Each convention reproduces its evaluator exactly, floating-point
arithmetic included:

- ``hotpotqa`` (hotpot_evaluate_v1.py) and ``2wiki`` (2wikimultihop_evaluate.py, v1): one gold answer
  (``answers[0]``); if either normalized side is yes/no/noanswer and the two differ, F1 is 0; no common
  token (which includes both sides empty) gives F1 0.
- ``musique`` (evaluate_v1.0.py): gold set = answer + aliases, EM and F1 are maxima over it; no yes/no
  rule; when either side has no tokens, F1 is 1 if both have none, else 0.
- ``bamboogle`` (FlashRAG / Search-R1): EM is 1 if the prediction equals any golden answer; F1 is the
  maximum over golden answers, a pair hit by the yes/no rule scoring 0.

Departures from the evaluators, all outside what they define: an example with no gold answer scores
(0, 0) instead of failing, and means are left unrounded on a 0-1 scale (MuSiQue rounds to 3 decimals,
2Wiki reports x100) so that callers choose the presentation.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from functools import lru_cache

from .data.example import BENCHMARKS, QAExample
from .errors import ConfigError

# The evaluators delete exactly the characters of string.punctuation and nothing else: unicode
# punctuation (dashes, curly quotes) stays. Deleting those bytes from the UTF-8 encoding is the same
# operation (ASCII bytes never occur inside a multi-byte sequence) and several times faster than
# str.translate; "surrogatepass" keeps lone surrogates round-tripping.
_PUNCT_BYTES = string.punctuation.encode("ascii")
# ASCII text is lowercased by mapping A-Z to a-z (what str.lower does to it) in the same
# bytes.translate pass that deletes the punctuation; that pass also maps every control character
# (tab and newline included) to NUL, so one byte search sends text whose `\b` boundaries are not plain
# token edges to the general path.
_CONTROLS = bytes(range(32)) + b"\x7f"
_ASCII_TABLE = bytes.maketrans(
    string.ascii_uppercase.encode("ascii") + _CONTROLS,
    string.ascii_lowercase.encode("ascii") + bytes(len(_CONTROLS)),
)
# Same pattern and (default, unicode-aware) flags as the evaluators: `\b` is a unicode word boundary,
# so "a" inside "éa" is kept.
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_ARTICLE_WORDS = frozenset(("a", "an", "the"))
_YES_NO = frozenset(("yes", "no", "noanswer"))
# An ASCII digit or a letter outside "a", "an", "the": it survives normalization, in a token that is
# no article, so a text holding one normalizes to at least one token.
_CONTENT_CHAR = re.compile(r"[0-9b-dfgi-mo-su-zB-DFGI-MO-SU-Z]")


def _normalized_tokens(s: str) -> list[str]:
    if s.isascii():
        text = s.encode("ascii").translate(_ASCII_TABLE, _PUNCT_BYTES)
        if 0 not in text:  # (an int needle: a plain memchr, several times cheaper than b"\0")
            # Letters, digits and spaces only: `\b` falls only at token edges, so the article regex
            # removes whole tokens only.
            tokens = text.decode("ascii").split()
            if _ARTICLE_WORDS.isdisjoint(tokens):
                return tokens
            return [tok for tok in tokens if tok not in _ARTICLE_WORDS]
    return _general_tokens(s)


def _general_tokens(s: str) -> list[str]:
    kept = s.lower().encode("utf-8", "surrogatepass").translate(None, _PUNCT_BYTES)
    text = kept.decode("utf-8", "surrogatepass")
    # Fast path, exact: when every non-space character is a regex word character (isalnum; "_" is
    # already gone), `\b` falls only at token edges, so the article regex removes whole tokens only.
    if text.replace(" ", "").isalnum():
        return [tok for tok in text.split() if tok not in _ARTICLE_WORDS]
    return _ARTICLES.sub(" ", text).split()


def normalize_answer(s: str) -> str:
    """Lowercase, drop ASCII punctuation, drop the articles a/an/the, collapse whitespace (in that order)."""
    return " ".join(_normalized_tokens(s))


@dataclass(frozen=True)
class _Convention:
    multi_gold: bool  # score against every answer (max), not only answers[0]
    yes_no_rule: bool  # yes/no/noanswer on either side and differing -> F1 0
    empty_match: bool  # both sides without tokens -> F1 1 (MuSiQue)


_CONVENTIONS: dict[str, _Convention] = {
    "hotpotqa": _Convention(multi_gold=False, yes_no_rule=True, empty_match=False),
    "2wiki": _Convention(multi_gold=False, yes_no_rule=True, empty_match=False),
    "musique": _Convention(multi_gold=True, yes_no_rule=False, empty_match=True),
    "bamboogle": _Convention(multi_gold=True, yes_no_rule=True, empty_match=False),
}


# A normalized answer is kept as its token list: tokens never hold whitespace, so two normalized
# answers are equal exactly when their token lists are, and a side is "yes"/"no"/"noanswer" exactly
# when its list is that one token.


def _unequal_pair_f1(ptoks: list[str], gtoks: list[str], yes_no_rule: bool) -> float:
    """F1 of a prediction whose normalized text differs from the gold's (equal texts score 1 or the
    empty rule, decided by the caller)."""
    if yes_no_rule and (
        (len(gtoks) == 1 and gtoks[0] in _YES_NO) or (len(ptoks) == 1 and ptoks[0] in _YES_NO)
    ):
        return 0.0
    if not ptoks or not gtoks:
        return 0.0
    gset = set(gtoks)
    common = gset.intersection(ptoks)
    if not common:
        return 0.0
    if len(gset) == len(gtoks) and len(set(ptoks)) == len(ptoks):
        num_same = len(common)  # no repeated token on either side: sets are the multisets
    else:
        num_same = sum(min(ptoks.count(w), gtoks.count(w)) for w in common)
    # The evaluators' exact arithmetic (Counter intersection size, then P, R, F1), bit for bit.
    precision = 1.0 * num_same / len(ptoks)
    recall = 1.0 * num_same / len(gtoks)
    return (2 * precision * recall) / (precision + recall)


def exact_match(pred: str, gold: str) -> float:
    """1.0 if the two answers are equal after normalization, else 0.0."""
    return float(normalize_answer(pred) == normalize_answer(gold))


def f1_score(pred: str, gold: str, yes_no_rule: bool, empty_match: bool = False) -> float:
    """Token F1 of one prediction against one gold answer.

    `yes_no_rule`: HotpotQA's rule (a yes/no/noanswer side that differs from the other scores 0).
    `empty_match`: MuSiQue's rule (both sides without tokens score 1); otherwise no common token,
    both sides empty included, scores 0.
    """
    ptoks = _normalized_tokens(pred)
    gtoks = _normalized_tokens(gold)
    if ptoks == gtoks:
        # Identical token lists: the evaluators' arithmetic gives exactly 1.0, or their empty rule.
        return 1.0 if ptoks or empty_match else 0.0
    return _unequal_pair_f1(ptoks, gtoks, yes_no_rule)


@lru_cache(maxsize=1 << 16)
def _golds(answers: tuple[str, ...]) -> tuple[list[str], ...]:
    # Gold answers recur (every rollout of a GRPO group, every checkpoint evaluated): normalize once.
    return tuple(map(_normalized_tokens, answers))


def score_example(benchmark: str, prediction: str, answers: list[str]) -> tuple[float, float]:
    """(EM, F1) of one prediction under `benchmark`'s official convention; no gold answer scores (0, 0)."""
    conv = _CONVENTIONS.get(benchmark)
    if conv is None:
        raise ConfigError("benchmark", f"unknown benchmark {benchmark!r}; expected one of {BENCHMARKS}")
    if not answers:
        return 0.0, 0.0
    if (prediction == answers[0] or (conv.multi_gold and prediction in answers)) and (
        conv.empty_match or _CONTENT_CHAR.search(prediction) is not None
    ):
        # Verbatim a gold answer: equal normalized texts, which score the maximum (1, 1) when they
        # hold a token (or under the empty rule), whatever the other answers; nothing to normalize.
        return 1.0, 1.0
    ptoks = _normalized_tokens(prediction)
    golds = _golds(tuple(answers)) if conv.multi_gold else _golds((answers[0],))
    em = 0.0
    f1 = 0.0
    for gold in golds:
        if ptoks == gold:
            # Equal token lists: F1 is exactly 1.0 (the maximum) unless both are empty and the
            # convention scores that 0.
            if ptoks or conv.empty_match:
                return 1.0, 1.0
            em = 1.0
            continue
        score = _unequal_pair_f1(ptoks, gold, conv.yes_no_rule)
        if score > f1:
            f1 = score
    return em, f1


@dataclass
class ScoreReport:
    """Means over examples on a 0-1 scale, unrounded; `by_type` maps qtype -> {"n", "em", "f1"}.

    Examples without a qtype count in the totals only. `missing` counts examples without a prediction
    (each scored 0).
    """

    n: int
    em: float
    f1: float
    by_type: dict[str, dict[str, float]] = field(default_factory=dict)
    missing: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


class _Sums:
    __slots__ = ("n", "em", "f1")

    def __init__(self) -> None:
        self.n, self.em, self.f1 = 0, 0.0, 0.0

    def add(self, em: float, f1: float) -> None:
        self.n += 1
        self.em += em
        self.f1 += f1

    def means(self) -> tuple[float, float]:
        return (self.em / self.n, self.f1 / self.n) if self.n else (0.0, 0.0)


def score_predictions(
    examples: Iterable[QAExample], predictions: Mapping[str, str], benchmark: str | None = None
) -> ScoreReport:
    """Score `predictions` (example id -> answer text) against `examples`.

    Each example is scored under its own `benchmark` unless `benchmark` overrides it. Prediction ids
    that match no example are ignored (the caller counts them if it cares).
    """
    total = _Sums()
    per_type: dict[str, _Sums] = {}
    missing = 0
    for ex in examples:
        pred = predictions.get(ex.id)
        if pred is None:
            missing += 1
            em, f1 = 0.0, 0.0
        else:
            em, f1 = score_example(benchmark or ex.benchmark, pred, ex.answers)
        total.add(em, f1)
        if ex.qtype is not None:
            per_type.setdefault(str(ex.qtype), _Sums()).add(em, f1)
    em, f1 = total.means()
    by_type = {}
    for qtype in sorted(per_type):
        sums = per_type[qtype]
        t_em, t_f1 = sums.means()
        by_type[qtype] = {"n": sums.n, "em": t_em, "f1": t_f1}
    return ScoreReport(n=total.n, em=em, f1=f1, by_type=by_type, missing=missing)
