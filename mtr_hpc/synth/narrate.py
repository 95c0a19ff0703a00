"""The grounded agent's words: thinks that restate what the last observations said.

Each think opens with what the previous turn's observations established (quoting the observed values,
so a reader and the consistency reward can follow the chain) and ends with the next intent. Thinks are
kept short: the first one is the intent alone (the question is right above it), and a quote is at most
`MAX_QUOTE` characters. Every word of a think is a token the policy generates in every rollout and every
evaluation episode, and, on the embedded demo, a token the CPU trains on.
"""

from __future__ import annotations

from typing import Any

from ..sim.evidence import EvidenceKB
from ..sim.text import split_sentences, states, token_set, tokens

MAX_QUOTE = 160
_RELATION_WORDS = {
    "earlier": "earlier than",
    "later": "later than",
    "less": "less than",
    "greater": "greater than",
    "equal": "the same as",
    "not_equal": "different from",
}


def _clip(text: str) -> str:
    return text if len(text) <= MAX_QUOTE else text[: MAX_QUOTE - 3].rstrip() + "..."


def _quote(sentence: str, value: str) -> str:
    """`sentence` within `MAX_QUOTE` characters, cut around `value` so the quote keeps it."""
    if len(sentence) <= MAX_QUOTE:
        return sentence
    at = sentence.lower().find(value.lower())
    if at < 0:
        return _clip(sentence)
    start = max(0, min(at - MAX_QUOTE // 3, len(sentence) - MAX_QUOTE + 6))
    piece = sentence[start : start + MAX_QUOTE - 6].strip()
    return ("..." if start > 0 else "") + piece + ("..." if start + MAX_QUOTE - 6 < len(sentence) else "")


def _best_sentence(sentences: list[str], focus: str, preferred: list[int]) -> str:
    want = set(tokens(focus))
    pool = [sentences[i] for i in preferred if 0 <= i < len(sentences)] or sentences
    return max(pool, key=lambda s: len(want.intersection(token_set(s)))) if pool else ""


def find_value(obs: dict[str, Any], value: str) -> tuple[str, str] | None:
    """(page title, sentence) of the first observed sentence that states `value`, or None."""
    if not value:
        return None
    for r in obs.get("results") or []:
        for sentence in split_sentences(r.get("snippet", "")) or [r.get("snippet", "")]:
            if states(sentence, value):
                return r.get("title", ""), sentence
    for sentence in obs.get("sentences") or []:
        if states(sentence, value):
            return obs.get("title", ""), sentence
    return None


def describe(
    name: str, args: dict[str, Any], obs: dict[str, Any], kb: EvidenceKB, focus: str, expect: str = ""
) -> str:
    """One or two sentences on what a call returned; `expect` is the value the call was made for (the
    sentence that states it is quoted, or its absence said)."""
    if "error" in obs:
        return f"The {name} call failed ({obs['error'].get('message', 'error')})."
    hit = find_value(obs, expect)
    if "relation" in obs:
        what = f"the {obs['relation']} of {obs.get('entity')}"
        if hit:
            return f"{hit[0]}: {_quote(hit[1], expect)} So {what} is {expect}."
        return f"The results do not give {what}." if obs.get("results") else f"Nothing was found for {what}."
    if name == "search":
        results = obs.get("results") or []
        if not results:
            return "The search returned nothing."
        if hit:
            return f"{hit[0]}: {_quote(hit[1], expect)}"
        if expect:
            return "The results do not answer this."
        titles = ", ".join(r["title"] for r in results[:3])
        return f"The search returned {titles}; the top result says: {_clip(results[0]['snippet'])}"
    if name == "open_page":
        if not obs.get("found"):
            return f"There is no page titled {obs.get('title')}."
        title = obs["title"]
        if hit:
            return f"The page on {title} says: {_quote(hit[1], expect)}"
        preferred = [int(i) for t, i in kb.supporting_facts if t == title and isinstance(i, int)]
        return f"The page on {title} says: {_clip(_best_sentence(obs['sentences'], focus, preferred))}"
    if name == "compare":
        rel = _RELATION_WORDS.get(str(args.get("operator")), str(args.get("operator")))
        verdict = "Yes" if obs.get("result") else "No"
        return f"Is {args.get('a')} {rel} {args.get('b')}? {verdict}."
    if name == "calculate":
        return f"{args.get('expression')} = {obs.get('value')}."
    return f"{name} returned {_clip(str(obs))}."


def conclusion(answer: str) -> str:
    return f"Putting these facts together, the answer is {answer}."
