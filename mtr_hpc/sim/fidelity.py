"""Fidelity of a tool environment, measured on what an episode observed (StableToolBench and MirrorAPI
measure simulator fidelity rather than assume it).

For one episode's messages: how many search-like observations (results or page sentences) it read, how
many stated a gold answer, how many came back empty, how many tokens its tool messages took, and which
of the question's gold pages (in hop order) appeared among the observed titles. Synthesis, GRPO and
evaluation log these for their environment, so the simulated and the real environment can be compared
on the same questions (`eval` puts them side by side).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from .text import loose_key, states


def _text(obs: dict[str, Any]) -> str:
    parts = [r.get("snippet", "") for r in obs.get("results") or [] if isinstance(r, dict)]
    return " ".join([*parts, *(s for s in obs.get("sentences") or [] if isinstance(s, str))])


def _titles(obs: dict[str, Any]) -> set[str]:
    out = {loose_key(str(r.get("title", ""))) for r in obs.get("results") or [] if isinstance(r, dict)}
    if obs.get("found"):
        out.add(loose_key(str(obs.get("title", ""))))
    return out


def observation_stats(
    messages: Iterable[dict[str, Any]],
    answers: list[str],
    gold_titles: list[str],
    count_tokens: Callable[[str], int] | None = None,
) -> dict[str, Any]:
    """The fidelity counts of one episode (see the module docstring)."""
    contents = [str(m.get("content") or "") for m in messages if m.get("role") == "tool"]
    observed = []
    for c in contents:
        try:
            obs = json.loads(c)
        except ValueError:
            continue
        if isinstance(obs, dict) and ("results" in obs or "sentences" in obs):
            observed.append(obs)
    with_answer = [any(states(_text(o), a) for a in answers) for o in observed]
    seen = set().union(*(_titles(o) for o in observed)) if observed else set()
    return {
        "obs": len(observed),
        "obs_answer": sum(with_answer),
        "obs_empty": sum(1 for o in observed if not (o.get("results") or o.get("sentences"))),
        "answer_seen": any(with_answer),
        "gold_found": [loose_key(t) in seen for t in gold_titles],
        "tool_messages": len(contents),
        "obs_tokens": sum(count_tokens(c) for c in contents)
        if count_tokens
        else sum(len(c.split()) for c in contents),
    }


def pool(stats: list[dict[str, Any]]) -> dict[str, float]:
    """Rates over many episodes: answer-present share of observations, episodes that saw the answer,
    empty observations, tokens per tool message, and the recall of the gold page of hops 1, 2 and 3+
    (None where no episode had such a hop)."""
    obs = sum(s["obs"] for s in stats)
    msgs = sum(s["tool_messages"] for s in stats)
    out = {
        "episodes": len(stats),
        "observations": obs,
        "answer_present": sum(s["obs_answer"] for s in stats) / obs if obs else 0.0,
        "answer_seen": sum(bool(s["answer_seen"]) for s in stats) / len(stats) if stats else 0.0,
        "empty": sum(s["obs_empty"] for s in stats) / obs if obs else 0.0,
        "obs_tokens": sum(s["obs_tokens"] for s in stats) / msgs if msgs else 0.0,
    }
    for hop in (1, 2, 3):
        found = [
            g
            for s in stats
            for i, g in enumerate(s["gold_found"])
            if (i + 1 == hop if hop < 3 else i + 1 >= 3)
        ]
        out[f"recall_hop{hop}"] = sum(found) / len(found) if found else None
    return out


_BY_OBSERVATION = ("answer_present", "empty")


def combine(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """`pool` results of disjoint episode sets (synthesis shards) as one: rates over observations
    weighted by observations, the others by episodes (tokens per tool message and the per-hop
    recalls are then close to, not exactly, the pooled value)."""
    parts = [p for p in parts if p.get("episodes")]
    if not parts:
        return {}
    out: dict[str, Any] = {
        "episodes": sum(p["episodes"] for p in parts),
        "observations": sum(p["observations"] for p in parts),
    }
    for key in parts[0]:
        if key in out:
            continue
        weight = "observations" if key in _BY_OBSERVATION else "episodes"
        have = [p for p in parts if p.get(key) is not None and p[weight]]
        total = sum(p[weight] for p in have)
        out[key] = sum(p[key] * p[weight] for p in have) / total if total else None
    return out
