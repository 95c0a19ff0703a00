"""The metrics' shortcuts (verbatim gold, ASCII normalization) agree with the plain rules."""

from __future__ import annotations

import re
import string

import pytest

from mtr_hpc.metrics import normalize_answer, score_example

ALL = ("hotpotqa", "2wiki", "musique", "bamboogle")


@pytest.mark.parametrize("text", ["The", "a", "An the", "", " . ", "A\tthe"])
def test_verbatim_gold_without_tokens_follows_the_empty_rule(text):
    assert normalize_answer(text) == ""
    assert score_example("musique", text, [text]) == (1.0, 1.0)
    for bm in ("hotpotqa", "2wiki"):
        assert score_example(bm, text, [text]) == (1.0, 0.0)
    # Bamboogle: EM from the verbatim gold, F1 the best over the others.
    assert score_example("bamboogle", text, [text, "x"]) == (1.0, 0.0)


@pytest.mark.parametrize("text", ["yes", "Paris", "the 1990s", "Thé", "ANT", "Eh?"])
def test_verbatim_gold_with_tokens_scores_one(text):
    assert normalize_answer(text) != ""
    for bm in ALL:
        assert score_example(bm, text, [text]) == (1.0, 1.0)
        assert score_example(bm, text, [text, "other"]) == (1.0, 1.0)
    # Only a multi-gold convention looks past answers[0].
    assert score_example("bamboogle", text, ["other", text]) == (1.0, 1.0)
    assert score_example("hotpotqa", text, ["other", text])[0] == 0.0


def _plain_normalize(s: str) -> str:
    # The evaluators' normalization, step by step (lower, punctuation, articles, whitespace).
    kept = "".join(ch for ch in s.lower() if ch not in string.punctuation)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", kept).split())


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("New\tYork", "new york"),
        ("a\x00b the", "\x00b"),  # NUL is no word character: "a" is a whole word
        ("THE\x7fEND", "\x7fend"),
        ("Rock-and-Roll, the Band", "rockandroll band"),
        ("an apple a day", "apple day"),
        ("_the_", ""),  # "_" is punctuation, removed before the articles
    ],
)
def test_ascii_control_characters_take_the_general_rules(text, want):
    assert _plain_normalize(text) == want
    assert normalize_answer(text) == want


def test_every_ascii_character_between_words_normalizes_like_the_rules():
    for code in range(128):
        for template in ("a{}b", "the{}x", "x{}an", "A{}An{}The", "{}"):
            text = template.replace("{}", chr(code))
            assert normalize_answer(text) == _plain_normalize(text), repr(text)
