"""EM/F1 metrics: hand-checked cases for every rule, and parity with the official evaluators.

The parity oracle below restates the official per-example functions (hotpot_evaluate_v1.py,
2wikimultihop_evaluate.py, MuSiQue evaluate_v1.0.py, FlashRAG's ExactMatch/F1_Score) in their plain,
slow form; the project's implementation takes fast paths and must agree with it bit for bit.
"""

from __future__ import annotations

import json
import random
import re
import string
from collections import Counter

import pytest

from mtr_hpc.data.example import QAExample
from mtr_hpc.errors import ConfigError
from mtr_hpc.metrics import (
    ScoreReport,
    exact_match,
    f1_score,
    normalize_answer,
    score_example,
    score_predictions,
)

# ---------------------------------------------------------------------------------------------------
# Reference oracle: the official definitions, restated literally.


def ref_normalize(s):
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def ref_hotpot(prediction, ground_truth):
    """hotpot_evaluate_v1.py exact_match_score + f1_score (also 2Wiki v1's answer scoring)."""
    npred, ngold = ref_normalize(prediction), ref_normalize(ground_truth)
    em = float(npred == ngold)
    if npred in ["yes", "no", "noanswer"] and npred != ngold:
        return em, 0
    if ngold in ["yes", "no", "noanswer"] and npred != ngold:
        return em, 0
    ptoks, gtoks = npred.split(), ngold.split()
    num_same = sum((Counter(ptoks) & Counter(gtoks)).values())
    if num_same == 0:
        return em, 0
    precision = 1.0 * num_same / len(ptoks)
    recall = 1.0 * num_same / len(gtoks)
    return em, (2 * precision * recall) / (precision + recall)


def ref_musique(prediction, ground_truths):
    """MuSiQue evaluate_v1.0.py: compute_exact / compute_f1, max over answer + aliases."""

    def get_tokens(s):
        return ref_normalize(s).split() if s else []

    def compute_exact(a_gold, a_pred):
        return int(ref_normalize(a_gold) == ref_normalize(a_pred))

    def compute_f1(a_gold, a_pred):
        gold_toks, pred_toks = get_tokens(a_gold), get_tokens(a_pred)
        num_same = sum((Counter(gold_toks) & Counter(pred_toks)).values())
        if len(gold_toks) == 0 or len(pred_toks) == 0:
            return int(gold_toks == pred_toks)
        if num_same == 0:
            return 0
        precision = 1.0 * num_same / len(pred_toks)
        recall = 1.0 * num_same / len(gold_toks)
        return (2 * precision * recall) / (precision + recall)

    return (
        max(compute_exact(prediction, g) for g in ground_truths),
        max(compute_f1(prediction, g) for g in ground_truths),
    )


def ref_flashrag(prediction, golden_answers):
    """FlashRAG ExactMatch.calculate_em and F1_Score.token_level_scores (the f1 entry)."""
    npred = ref_normalize(prediction)
    em = 0.0
    for golden in golden_answers:
        if ref_normalize(golden) == npred:
            em = 1.0
            break
    f1 = 0
    for golden in golden_answers:
        ngold = ref_normalize(golden)
        if npred in ["yes", "no", "noanswer"] and npred != ngold:
            continue
        if ngold in ["yes", "no", "noanswer"] and npred != ngold:
            continue
        ptoks, gtoks = npred.split(), ngold.split()
        num_same = sum((Counter(ptoks) & Counter(gtoks)).values())
        if num_same == 0:
            continue
        precision = 1.0 * num_same / len(ptoks)
        recall = 1.0 * num_same / len(gtoks)
        f1 = max((2 * precision * recall) / (precision + recall), f1)
    return em, f1


def reference(benchmark, prediction, answers):
    if benchmark in ("hotpotqa", "2wiki"):
        return ref_hotpot(prediction, answers[0])
    if benchmark == "musique":
        return ref_musique(prediction, answers)
    return ref_flashrag(prediction, answers)


ALL = ("hotpotqa", "2wiki", "musique", "bamboogle")

# ---------------------------------------------------------------------------------------------------
# Hand-checked cases.


def test_normalize_order_and_rules():
    assert normalize_answer("The Beatles") == "beatles"
    assert normalize_answer("theory of a thing") == "theory of thing"  # "the" inside a word stays
    assert normalize_answer("An anthem, an Apple") == "anthem apple"
    assert normalize_answer("U.S.") == "us"
    # punctuation goes before articles: "a.b" -> "ab" (no article left), "the-end" -> "theend"
    assert normalize_answer("a.b the-end") == "ab theend"
    # ... and "l'a" -> "la", while "(a)" -> "" because the bracket is dropped first
    assert normalize_answer("l'a (a)") == "la"
    assert normalize_answer("  New\tYork \n City ") == "new york city"
    assert normalize_answer("") == ""
    assert normalize_answer("The") == ""


def test_unicode_is_not_stripped():
    assert normalize_answer("Café Müller") == "café müller"
    assert exact_match("café", "cafe") == 0.0
    assert normalize_answer("rock–and–roll") == "rock–and–roll"  # en dash kept
    assert normalize_answer("“Hello”") == "“hello”"  # curly quotes kept
    assert exact_match("“Hello”", "Hello") == 0.0
    # a unicode non-word character is a regex word boundary, so an article beside it still goes
    assert normalize_answer("o’the") == "o’"
    # an accented letter is a word character: no boundary, "a" stays
    assert normalize_answer("éa") == "éa"
    # unicode whitespace collapses like ASCII whitespace
    assert normalize_answer("new\u00a0york\u2003city") == "new york city"


def test_punctuation_and_articles_em():
    assert exact_match("U.S.", "US") == 1.0
    assert exact_match("The Beatles", "beatles") == 1.0
    assert exact_match("theory", "ory") == 0.0
    for bm in ALL:
        assert score_example(bm, "the Beatles!", ["Beatles"]) == (1.0, 1.0)


def test_yes_no_rule():
    for bm in ("hotpotqa", "2wiki", "bamboogle"):
        assert score_example(bm, "yes", ["no"]) == (0.0, 0.0)
        assert score_example(bm, "Yes.", ["yes"]) == (1.0, 1.0)
        assert score_example(bm, "noanswer", ["noanswer"]) == (1.0, 1.0)
        # "no answer" normalizes to two tokens, not to "noanswer": the rule zeroes the pair
        assert score_example(bm, "noanswer", ["no answer"]) == (0.0, 0.0)
        # one common token, but the gold is "yes": F1 0 (MuSiQue would give 0.5)
        assert score_example(bm, "yes it is", ["yes"]) == (0.0, 0.0)
        assert score_example(bm, "yes", ["yes it is"]) == (0.0, 0.0)
    assert score_example("musique", "yes", ["no"]) == (0.0, 0.0)
    assert score_example("musique", "yes", ["yes it is"]) == (0.0, 0.5)
    assert f1_score("yes", "yes it is", yes_no_rule=True) == 0.0
    assert f1_score("yes", "yes it is", yes_no_rule=False) == 0.5


def test_aliases():
    answers = ["United States", "USA", "U.S."]
    assert score_example("musique", "usa", answers) == (1.0, 1.0)
    assert score_example("bamboogle", "U.S", answers) == (1.0, 1.0)
    # HotpotQA and 2Wiki score against the first answer only
    assert score_example("hotpotqa", "usa", answers) == (0.0, 0.0)
    assert score_example("2wiki", "usa", answers) == (0.0, 0.0)
    # F1 max over aliases: vs "united states" P=2/4, R=1 -> 2/3
    em, f1 = score_example("musique", "the united states of america", answers)
    assert em == 0.0 and f1 == pytest.approx(2 / 3)
    # FlashRAG skips the yes/no pair, takes the other: P=1, R=1/2 -> 2/3
    em, f1 = score_example("bamboogle", "washington", ["yes", "George Washington"])
    assert em == 0.0 and f1 == pytest.approx(2 / 3)


def test_empty_strings_per_convention():
    assert score_example("hotpotqa", "", [""]) == (1.0, 0.0)
    assert score_example("2wiki", "", [""]) == (1.0, 0.0)
    assert score_example("bamboogle", "", [""]) == (1.0, 0.0)
    assert score_example("musique", "", [""]) == (1.0, 1.0)
    # both normalize to nothing: the same as two empty strings
    assert score_example("musique", "the", ["a ."]) == (1.0, 1.0)
    assert score_example("hotpotqa", "the", ["a ."]) == (1.0, 0.0)
    for bm in ALL:
        assert score_example(bm, "", ["Paris"]) == (0.0, 0.0)
        assert score_example(bm, "Paris", [""]) == (0.0, 0.0)
        assert score_example(bm, "Paris", []) == (0.0, 0.0)
    assert f1_score("", "", yes_no_rule=False, empty_match=True) == 1.0
    assert f1_score("", "", yes_no_rule=False) == 0.0


def test_partial_overlap_by_hand():
    # P = 1/2, R = 1/3 -> F1 = 2 * (1/6) / (5/6) = 0.4
    for bm in ALL:
        em, f1 = score_example(bm, "Paris Texas", ["Paris France Europe"])
        assert em == 0.0 and f1 == pytest.approx(0.4)
    # repeated tokens count once per occurrence on both sides: common = {new: 1, york: 1}, P=2/3, R=1
    assert f1_score("new new york", "New York", yes_no_rule=True) == pytest.approx(0.8)
    # P = 3/3, R = 3/4 -> 6/7
    assert f1_score("new york city", "new york city hall", yes_no_rule=True) == pytest.approx(6 / 7)


def test_whitespace_only_differences():
    for bm in ALL:
        assert score_example(bm, " New   York\tCity\n", ["new york city"]) == (1.0, 1.0)


def test_unknown_benchmark_is_a_typed_error():
    with pytest.raises(ConfigError, match="benchmark"):
        score_example("squad", "a", ["a"])


# ---------------------------------------------------------------------------------------------------
# Aggregation.


def _ex(i, answers, qtype, benchmark="musique"):
    return QAExample(id=f"q{i}", benchmark=benchmark, question="?", answers=answers, qtype=qtype)


def test_score_predictions_means_types_and_missing():
    examples = [
        _ex(0, ["Paris"], "2hop"),
        _ex(1, ["Paris France Europe", "Lutetia"], "2hop"),
        _ex(2, ["Berlin"], "3hop"),
        _ex(3, ["Rome"], None),
    ]
    preds = {"q0": "paris", "q1": "Paris Texas", "q3": "Rome", "q9": "extra"}
    report = score_predictions(examples, preds)
    assert isinstance(report, ScoreReport)
    assert report.n == 4 and report.missing == 1
    assert report.em == pytest.approx(2 / 4)
    assert report.f1 == pytest.approx((1 + 0.4 + 0 + 1) / 4)
    assert report.by_type == {
        "2hop": {"n": 2, "em": 0.5, "f1": pytest.approx(0.7)},
        "3hop": {"n": 1, "em": 0.0, "f1": 0.0},
    }
    d = report.to_dict()
    assert set(d) == {"n", "em", "f1", "by_type", "missing"}


def test_score_predictions_benchmark_override():
    examples = [_ex(0, ["United States", "USA"], "x")]
    assert score_predictions(examples, {"q0": "USA"}).em == 1.0
    assert score_predictions(examples, {"q0": "USA"}, benchmark="hotpotqa").em == 0.0


def test_score_predictions_empty():
    report = score_predictions([], {})
    assert (report.n, report.em, report.f1, report.missing) == (0, 0.0, 0.0, 0)


# ---------------------------------------------------------------------------------------------------
# Parity with the oracle on real answers.

TRICKY = [
    "a\u0301",
    "éa b",
    "the_end",
    "o’the a–an",
    "\x1ca\x1cthe",
    "İstanbul",
    "ǅemal",
    "Straße",
    "\ud800 the",
    "½ an",
    "a\x00b the\x07",
    "THE\u2028END",
    "ⅷ the",
    "   ",
    "...",
]


@pytest.fixture(scope="module")
def gold_sets(shared_data):
    """Real gold answer sets of each benchmark's dev data, as each official evaluator sees them."""
    hotpot = json.loads((shared_data / "hotpotqa/hotpot_dev_qa_full.json").read_text())
    musique = json.loads((shared_data / "musique/musique_ans_v1.0_dev_noparagraphs.json").read_text())
    twowiki = json.loads((shared_data / "2wikimultihopqa/2wiki_dev_qa_full.json").read_text())
    lines = (shared_data / "bamboogle/bamboogle_test.jsonl").read_text().splitlines()
    bamboogle = [json.loads(line) for line in lines if line.strip()]
    return {
        "hotpotqa": [[r["answer"]] for r in hotpot],
        "2wiki": [[r["answer"]] for r in twowiki],
        "musique": [[r["answer"], *r["answer_aliases"]] for r in musique],
        "bamboogle": [list(r["golden_answers"]) for r in bamboogle],
    }


def _perturb(rng, answer, other):
    toks = answer.split()
    choices = [
        lambda: answer,
        lambda: answer.upper(),
        lambda: "The " + answer + ".",
        lambda: answer.replace(" ", ", "),
        lambda: " ".join(toks[:-1]) if len(toks) > 1 else answer + " an",
        lambda: " ".join(toks[1:]) if len(toks) > 1 else "a " + answer,
        lambda: answer + " " + other,
        lambda: toks[0] + " " + answer if toks else "",
        lambda: other,
        lambda: rng.choice(["yes", "no", "noanswer", "Yes.", "", "the", "no answer"]),
        lambda: answer.replace(" ", "\u00a0") + "–" + rng.choice(TRICKY),
        lambda: "“" + answer + "”",
        lambda: " ".join(rng.sample(toks, len(toks))) if toks else answer,
    ]
    return rng.choice(choices)()


def test_normalize_parity(gold_sets):
    golds = gold_sets
    strings = {a for sets in golds.values() for answers in sets for a in answers}
    strings.update(TRICKY)
    strings.update(t + " " + u for t in TRICKY for u in TRICKY)
    for s in strings:
        assert normalize_answer(s) == ref_normalize(s), repr(s)


@pytest.mark.parametrize("benchmark", ALL)
def test_score_parity_with_official(gold_sets, benchmark):
    rng = random.Random(f"parity-{benchmark}")
    golds = gold_sets
    pool = golds[benchmark]
    everything = [a for sets in golds.values() for answers in sets for a in answers]
    n_yes_no_golds = 0
    for _ in range(3000):
        answers = rng.choice(pool)
        if rng.random() < 0.1:  # exercise the yes/no and empty gold sides too
            answers = [rng.choice(["yes", "no", "", "The"]), *answers[1:]]
            n_yes_no_golds += 1
        pred = _perturb(rng, rng.choice(answers), rng.choice(everything))
        ours = score_example(benchmark, pred, answers)
        ref = reference(benchmark, pred, answers)
        assert ours == ref, (benchmark, pred, answers, ours, ref)
    assert n_yes_no_golds > 100
