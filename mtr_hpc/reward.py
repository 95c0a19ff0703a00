"""The composite trace reward of GRPO (design §4): validity, correctness and internal consistency.

    r(τ) = correct(τ) + λ·consist(τ)   if valid(τ)
    r(τ) = -β                          otherwise

- **valid**: `validate_trace` finds no issue (grammar, declared tools, schema-valid arguments and
  observations, exactly one final answer, at most `max_turns` assistant turns) and the episode's token
  count is at most `max_tokens`.
- **correct** = α·EM + (1-α)·F1 of the final answer against the gold set, under the benchmark's own
  convention (`metrics.score_example`).
- **consist** = mean of three components in [0, 1]:

  * ``grounded`` (0 or 1): the normalized answer occurs, on token boundaries, in a normalized scalar
    value of some non-error observation. A yes/no answer is grounded instead when it follows a
    comparison whose operands were observed: a successful call of a comparison tool (its name contains
    "compar") each of whose string operands occurs in an observation made before it, or at least two
    successful calls with different arguments (two lookups whose results the verdict compares).
  * ``non_redundant`` (0 or 1): no call (tool name + canonical JSON arguments) is made twice.
  * ``coherent`` (fraction of assistant turns): a turn is coherent when it has a non-empty think and,
    if it follows a round of observations, it references that round: its think, its call arguments or
    its answer share a token with the round's *informative tokens*. These are the normalized tokens of
    the observations' string and number values (booleans count as "yes"/"no"), minus stop words and
    minus the question's own tokens, from non-error observations. A round without informative tokens
    (only errors, or nothing new) asks for no reference. The first turn only needs its think.
    design §4 says "observations are referenced by id"; the tool-call id linkage is structural (checked
    by `validate_trace`), so this component measures the part a policy can get wrong: using what it saw.

Components are computed for every episode (and logged), whatever its validity; only `total` depends on
validity. Every number is finite by construction, which `score_episode` asserts (the GRPO driver stops
on a NaN reward).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from .data.example import QAExample
from .errors import ConfigError
from .metrics import normalize_answer, score_example
from .toolspec import canonical_json
from .trace.model import Message, ToolSpec, Trace
from .trace.parser import decode_arguments, parse_turn
from .trace.validator import validate_trace

YES_NO = frozenset({"yes", "no"})
_COMPARISON_RE = re.compile(r"compar", re.IGNORECASE)
# Argument keys that name how to compare, not what: they are not operands.
_NON_OPERAND_KEYS = frozenset({"operator", "op", "relation", "mode", "unit", "kind"})
STOP_WORDS = frozenset(
    "of in on at to for and or is was are were be been being by with as from that this these those it its "
    "he she they his her their them i we you which who whom what when where how not but if so than then "
    "there has have had do does did will would can could also into about after before".split()
)


@dataclass
class RewardConfig:
    """Weights of design §4: `alpha` mixes EM and F1, `lam` weighs consistency, `beta` is the penalty."""

    alpha: float = 1.0
    lam: float = 0.2
    beta: float = 0.5
    max_turns: int = 8
    max_tokens: int = 4096

    def validate(self) -> RewardConfig:
        for key in ("alpha", "lam", "beta"):
            value = getattr(self, key)
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise ConfigError(f"reward.{key}", f"must be a finite number, got {value!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError("reward.alpha", f"must be in [0, 1], got {self.alpha}")
        if self.lam < 0 or self.beta < 0:
            raise ConfigError("reward.lam" if self.lam < 0 else "reward.beta", "must be >= 0")
        for key in ("max_turns", "max_tokens"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"reward.{key}", f"must be an integer >= 1, got {value!r}")
        return self


@dataclass
class RewardBreakdown:
    """Every component of one episode's reward; `reasons` holds the validity issue codes (sorted)."""

    valid: bool
    correct: float
    em: float
    f1: float
    consist: float
    grounded: float
    non_redundant: float
    coherent: float
    total: float
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def metrics(self, prefix: str = "reward/") -> dict[str, float]:
        """The numeric components under `prefix` (for per-step means in metrics.jsonl / W&B)."""
        keys = ("correct", "em", "f1", "consist", "grounded", "non_redundant", "coherent", "total")
        out = {f"{prefix}{k}": float(getattr(self, k)) for k in keys}
        out[f"{prefix}valid"] = float(self.valid)
        return out


# ---- reading a trace's messages (defensively: they come from a policy) -------------------------------
@dataclass
class _Call:
    name: str
    args: Any
    observation: Any  # decoded JSON, or None when missing / not JSON
    before: list[Any]  # observations made before this call


@dataclass
class _Turn:
    think: str
    text_tokens: set[str]  # normalized tokens of think + call arguments + answer
    calls: list[_Call]
    answer: str | None


def _loads(content: Any) -> Any:
    if isinstance(content, dict | list):
        return content
    try:
        return json.loads(content) if isinstance(content, str) else None
    except (ValueError, RecursionError):
        return None


def _is_error(obs: Any) -> bool:
    return not isinstance(obs, dict) or "error" in obs


def _scalars(obj: Any, depth: int = 0) -> list[str]:
    """String renderings of the scalar leaves of an observation (booleans as yes/no)."""
    if depth > 32:
        return []
    if isinstance(obj, bool):
        return ["yes" if obj else "no"]
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, int | float):
        return [str(obj)] if math.isfinite(obj) else []
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _scalars(v, depth + 1)]
    if isinstance(obj, list):
        return [s for v in obj for s in _scalars(v, depth + 1)]
    return []


def _contains(haystack: str, needle: str) -> bool:
    """`needle` occurs in `haystack` on token boundaries (both normalized)."""
    return bool(needle) and f" {needle} " in f" {haystack} "


def _turns(messages: list[Message]) -> list[_Turn]:
    turns: list[_Turn] = []
    seen: list[Any] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") != "assistant":
            continue
        parsed = parse_turn(msg.get("content") or "", require_action=False)
        think = parsed.think or ""
        texts = [think, parsed.answer or ""]
        calls: list[_Call] = []
        raw_calls = msg.get("tool_calls") if isinstance(msg.get("tool_calls"), list) else []
        responses = {
            m.get("tool_call_id"): m.get("content")
            for m in messages[i + 1 : i + 1 + len(raw_calls)]
            if isinstance(m, dict) and m.get("role") == "tool"
        }
        for call in raw_calls:
            fn = call.get("function") if isinstance(call, dict) else None
            if not isinstance(fn, dict):
                continue
            args, err = decode_arguments(fn.get("arguments", "{}"))
            args = args if err is None else fn.get("arguments")
            texts += _scalars(args)
            obs = _loads(responses.get(call.get("id")))
            calls.append(_Call(str(fn.get("name")), args, obs, list(seen)))
        seen += [c.observation for c in calls if c.observation is not None]
        tokens = {t for s in texts for t in normalize_answer(s).split()}
        turns.append(_Turn(think, tokens, calls, parsed.answer))
    return turns


# ---- the three consistency components -----------------------------------------------------------------
def _observed(text: str, observations: list[Any]) -> bool:
    norm = normalize_answer(text)
    return any(
        _contains(normalize_answer(s), norm)
        for obs in observations
        if not _is_error(obs)
        for s in _scalars(obs)
    )


def _comparison_grounded(calls: list[_Call]) -> bool:
    for c in calls:
        if not _COMPARISON_RE.search(c.name) or _is_error(c.observation) or not isinstance(c.args, dict):
            continue
        operands = [v for k, v in c.args.items() if k not in _NON_OPERAND_KEYS and isinstance(v, str)]
        if len(operands) >= 2 and all(_observed(v, c.before) for v in operands):
            return True
    lookups = {
        (c.name, _canonical(c.args))
        for c in calls
        if not _COMPARISON_RE.search(c.name) and not _is_error(c.observation)
    }
    return len(lookups) >= 2


def grounded(answer: str | None, turns: list[_Turn]) -> float:
    if not answer:
        return 0.0
    calls = [c for t in turns for c in t.calls]
    if normalize_answer(answer) in YES_NO:
        return float(_comparison_grounded(calls))
    return float(_observed(answer, [c.observation for c in calls]))


def _canonical(args: Any) -> str:
    try:
        return canonical_json(args)
    except (TypeError, ValueError):
        return repr(args)


def non_redundant(turns: list[_Turn]) -> float:
    keys = [(c.name, _canonical(c.args)) for t in turns for c in t.calls]
    return float(len(keys) == len(set(keys)))


def _informative(observations: list[Any], question_tokens: set[str]) -> set[str]:
    tokens = {
        t
        for obs in observations
        if not _is_error(obs)
        for s in _scalars(obs)
        for t in normalize_answer(s).split()
    }
    return tokens - STOP_WORDS - question_tokens


def coherent(turns: list[_Turn], question: str) -> float:
    if not turns:
        return 0.0
    question_tokens = set(normalize_answer(question).split())
    ok = 0
    previous: list[_Call] = []
    for turn in turns:
        fresh = _informative([c.observation for c in previous], question_tokens)
        referenced = not fresh or bool(fresh & turn.text_tokens)
        ok += bool(turn.think.strip()) and referenced
        previous = turn.calls
    return ok / len(turns)


# ---- the reward ---------------------------------------------------------------------------------------
def _final_answer(messages: list[Message]) -> str | None:
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") == "assistant":
            return parse_turn(msg.get("content") or "").answer
    return None


def _as_trace(
    trace_or_messages: Trace | list[Message], tools: list[ToolSpec] | None, example: QAExample
) -> Trace:
    if isinstance(trace_or_messages, Trace):
        return trace_or_messages
    messages = trace_or_messages if isinstance(trace_or_messages, list) else []
    return Trace(
        f"{example.benchmark}:{example.id}:rollout",
        example.id,
        example.benchmark,
        list(tools or []),
        messages,
        _final_answer(messages),
    )


def score_episode(
    trace_or_messages: Trace | list[Message],
    tools: list[ToolSpec] | None,
    example: QAExample,
    cfg: RewardConfig | None = None,
    n_tokens: int | None = None,
) -> RewardBreakdown:
    """The reward of one episode (a `Trace`, or a rollout's messages + its tools).

    `n_tokens`: the episode's length in tokens as the trainer sees it (prompt included); None skips the
    length check (for traces scored outside a rollout). Never raises on policy output.
    """
    cfg = (cfg or RewardConfig()).validate()
    trace = _as_trace(trace_or_messages, tools, example)
    reasons = {issue.code for issue in validate_trace(trace, max_turns=cfg.max_turns)}
    if n_tokens is not None and n_tokens > cfg.max_tokens:
        reasons.add("too_many_tokens")
    messages = trace.messages if isinstance(trace.messages, list) else []
    turns = _turns(messages)
    answer = _final_answer(messages)
    em, f1 = score_example(example.benchmark, answer, example.answers) if answer else (0.0, 0.0)
    parts = {
        "grounded": grounded(answer, turns),
        "non_redundant": non_redundant(turns),
        "coherent": coherent(turns, example.question),
    }
    consist = sum(parts.values()) / len(parts)
    correct = cfg.alpha * em + (1.0 - cfg.alpha) * f1
    valid = not reasons
    total = correct + cfg.lam * consist if valid else -cfg.beta
    out = RewardBreakdown(valid, correct, em, f1, consist, **parts, total=total, reasons=sorted(reasons))
    numbers = (out.correct, out.em, out.f1, out.consist, *parts.values(), out.total)
    assert all(math.isfinite(x) for x in numbers), f"non-finite reward component: {out}"
    return out
