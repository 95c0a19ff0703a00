"""The predefined utility tools every task gets: `search`, `open_page`, `compare`, `calculate`.

`search` and `open_page` are answered by the ToolActor (grounded: the example's evidence; llm: a
model). `compare` and `calculate` are deterministic functions computed here, in every backend, since a
simulated comparison that disagrees with its operands would teach the policy nothing useful.
"""

from __future__ import annotations

import ast
import operator as op
import re
from typing import Any

from .config import ResultsConfig
from .schemas import returns_schema
from .text import norm_key

_STR = {"type": "string"}
# Ranked passages, the results of `search` and of every relation tool (`sim/observations.py`).
RESULTS_SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"title": _STR, "snippet": _STR},
        "required": ["title", "snippet"],
        "additionalProperties": False,
    },
}

SEARCH = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search an encyclopedia and return the best-matching passages, ranked.",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "The search query, in words."},
                "top_k": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 10,
                    "description": f"How many passages to return (default {ResultsConfig.top_k}).",
                },
            },
            "required": ["query"],
            "additionalProperties": False,
        },
    },
    "x-returns": returns_schema(
        {
            "query": _STR,
            "results": RESULTS_SCHEMA,
        },
        ["query", "results"],
    ),
}

OPEN_PAGE = {
    "type": "function",
    "function": {
        "name": "open_page",
        "description": "Open an encyclopedia page by its exact title and return its first sentences.",
        "parameters": {
            "type": "object",
            "properties": {"title": {"type": "string", "description": "The page title."}},
            "required": ["title"],
            "additionalProperties": False,
        },
    },
    "x-returns": returns_schema(
        {"title": _STR, "found": {"type": "boolean"}, "sentences": {"type": "array", "items": _STR}},
        ["title", "found", "sentences"],
    ),
}

OPERATORS = ("earlier", "later", "less", "greater", "equal", "not_equal")

COMPARE = {
    "type": "function",
    "function": {
        "name": "compare",
        "description": "Compare two values (dates, numbers or names): is `a` <operator> `b`?",
        "parameters": {
            "type": "object",
            "properties": {
                "a": {"type": "string", "description": "The first value."},
                "b": {"type": "string", "description": "The second value."},
                "operator": {
                    "type": "string",
                    "enum": list(OPERATORS),
                    "description": "earlier/later for dates, less/greater for numbers, equal/not_equal for any.",
                },
            },
            "required": ["a", "b", "operator"],
            "additionalProperties": False,
        },
    },
    "x-returns": returns_schema(
        {"result": {"type": "boolean"}, "kind": {"type": "string", "enum": ["date", "number", "text"]}},
        ["result", "kind"],
    ),
}

CALCULATE = {
    "type": "function",
    "function": {
        "name": "calculate",
        "description": "Evaluate an arithmetic expression (+, -, *, /, parentheses).",
        "parameters": {
            "type": "object",
            "properties": {"expression": {"type": "string", "description": "For example (1990 - 1912) / 2."}},
            "required": ["expression"],
            "additionalProperties": False,
        },
    },
    "x-returns": returns_schema({"expression": _STR, "value": {"type": "number"}}, ["expression", "value"]),
}

UTILITY_TOOLS: dict[str, dict[str, Any]] = {
    "search": SEARCH,
    "open_page": OPEN_PAGE,
    "compare": COMPARE,
    "calculate": CALCULATE,
}
COMPUTED = frozenset({"compare", "calculate"})

_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        "january february march april may june july august september october november december".split()
    )
}
_YEAR_RE = re.compile(r"\b(\d{3,4})\b")
_DAY_RE = re.compile(r"\b(\d{1,2})(?:st|nd|rd|th)?\b")
_NUM_RE = re.compile(r"^-?\d[\d,]*(\.\d+)?$")


def parse_date(text: str) -> tuple[int, int, int] | None:
    """(year, month, day) of "27 April 1796", "April 22, 1872", "1931", "March 1910"; None otherwise."""
    low = text.lower().replace(",", " ")
    years = _YEAR_RE.findall(low)
    if not years:
        return None
    year = int(years[-1])
    month = next((n for name, n in _MONTHS.items() if name in low or name[:3] + " " in low + " "), 0)
    rest = low.replace(years[-1], " ")
    day_m = _DAY_RE.search(rest) if month else None
    day = int(day_m.group(1)) if day_m and 1 <= int(day_m.group(1)) <= 31 else 0
    if "bc" in low.split():
        year = -year
    return (year, month, day)


def _as_number(text: str) -> float | None:
    s = text.strip().replace(" ", "")
    return float(s.replace(",", "")) if _NUM_RE.match(s) else None


def compare_values(a: str, b: str, operator: str) -> dict[str, Any]:
    """The observation of `compare`; an error observation when the operands cannot be ordered."""
    na, nb = _as_number(a), _as_number(b)
    if operator in ("equal", "not_equal"):
        if na is not None and nb is not None:
            same, kind = na == nb, "number"
        else:
            same, kind = norm_key(a) == norm_key(b), "text"
        return {"result": same if operator == "equal" else not same, "kind": kind}
    if na is not None and nb is not None and operator in ("less", "greater"):
        return {"result": na < nb if operator == "less" else na > nb, "kind": "number"}
    da, db = parse_date(a), parse_date(b)
    if da is None or db is None:
        return {"error": {"type": "bad_arguments", "message": f"cannot order {a!r} and {b!r}"}}
    if operator in ("earlier", "less"):
        return {"result": da < db, "kind": "date"}
    return {"result": da > db, "kind": "date"}


_BINOPS = {ast.Add: op.add, ast.Sub: op.sub, ast.Mult: op.mul, ast.Div: op.truediv}


def _eval(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _BINOPS[type(node.op)](_eval(node.left), _eval(node.right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_eval(node.operand)
    raise ValueError("unsupported expression")


def calculate(expression: str) -> dict[str, Any]:
    try:
        if len(expression) > 200:
            raise ValueError("expression too long")
        value = _eval(ast.parse(expression, mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError, RecursionError) as exc:
        return {"error": {"type": "bad_arguments", "message": f"cannot evaluate {expression!r}: {exc}"}}
    return {"expression": expression, "value": value}


def run_computed(name: str, args: dict[str, Any]) -> dict[str, Any]:
    if name == "compare":
        return compare_values(str(args["a"]), str(args["b"]), str(args["operator"]))
    return calculate(str(args["expression"]))
