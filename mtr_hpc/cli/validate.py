"""`mtr validate TRACES.jsonl [--json] [--max-turns N] [--strict]`: check every trace of a file (design §7).

Counts are of traces: `errors[code]` is the number of records with at least one issue of that code.
A line that is not JSON is an invalid record with the code `bad_json`; it does not stop the run.
`warnings[code]` counts the records whose tools break one of the project's quality rules that the OpenAI
format does not require (a tool or parameter without a description); `--strict` makes them errors.
Exit status: 0 all valid, 1 some invalid, 2 unreadable input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Issue lines the human-readable report shows before its summary.
MAX_SHOWN = 20


@dataclass
class Summary:
    """Per-record counts shared by `mtr validate` and `mtr tools validate`."""

    path: str
    n: int = 0
    valid: int = 0
    errors: Counter = field(default_factory=Counter)
    warnings: Counter = field(default_factory=Counter)
    shown: list[str] = field(default_factory=list)
    n_issues: int = 0

    def add(self, where: str, issues: list[tuple[str, str]], warnings: list[tuple[str, str]] = ()) -> None:
        """Record one record's issues and warnings as (code, message) pairs."""
        self.warnings.update({code for code, _ in warnings})
        for code, message in warnings:
            if len(self.shown) < MAX_SHOWN:
                self.shown.append(f"{where}: warning: {code}: {message}")
        self.n += 1
        if not issues:
            self.valid += 1
            return
        self.n_issues += len(issues)
        self.errors.update({code for code, _ in issues})
        for code, message in issues:
            if len(self.shown) < MAX_SHOWN:
                self.shown.append(f"{where}: {code}: {message}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "n": self.n,
            "valid": self.valid,
            "invalid": self.n - self.valid,
            "errors": dict(sorted(self.errors.items())),
            "warnings": dict(sorted(self.warnings.items())),
            "n_issues": self.n_issues,
        }

    def emit(self, as_json: bool, noun: str) -> int:
        if as_json:
            print(json.dumps(self.to_dict()))
        else:
            for line in self.shown:
                print(line, file=sys.stderr)
            if self.n_issues > len(self.shown):
                print(f"... {self.n_issues - len(self.shown)} more issues", file=sys.stderr)
            print(
                f"{self.path}: {self.n} {noun}, {self.valid} valid, {self.n - self.valid} invalid",
                file=sys.stderr,
            )
            for code, count in sorted(self.errors.items(), key=lambda kv: (-kv[1], kv[0])):
                print(f"  {code}: {count}", file=sys.stderr)
            for code, count in sorted(self.warnings.items(), key=lambda kv: (-kv[1], kv[0])):
                print(f"  warning {code}: {count} (errors with --strict)", file=sys.stderr)
        return 0 if self.valid == self.n else 1


def run(args: argparse.Namespace) -> int:
    from ..trace.io import iter_trace_lines
    from ..trace.validator import trace_tool_warnings, validate_record

    if args.max_turns < 1:
        from ..errors import ConfigError

        raise ConfigError("--max-turns", "must be at least 1")
    summary = Summary(str(args.traces))
    for lineno, obj, err in iter_trace_lines(args.traces):
        where = f"line {lineno}"
        if err is not None:
            summary.add(where, [("bad_json", str(err))])
            continue
        issues = validate_record(obj, max_turns=args.max_turns, strict=args.strict)
        warnings = [] if args.strict or not isinstance(obj, dict) else trace_tool_warnings(obj.get("tools"))
        if isinstance(obj, dict) and isinstance(obj.get("id"), str):
            where += f" ({obj['id'][:60]})"
        summary.add(where, [(i.code, str(i)) for i in issues], [(w.code, str(w)) for w in warnings])
    return summary.emit(args.json, "traces")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "validate",
        help="validate a traces JSONL file",
        description="Validate every trace of a JSONL file: structure, grammar, tools, calls, observations.",
    )
    p.add_argument("traces", type=Path, metavar="TRACES.jsonl")
    p.add_argument("--json", action="store_true", help="print one JSON object with the counts on stdout")
    p.add_argument("--max-turns", type=int, default=8, help="most assistant turns a trace may have")
    add_strict_flag(p)
    p.set_defaults(func=run)


def add_strict_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--strict",
        action="store_true",
        help="the project's quality rules beyond the OpenAI format (described tools and parameters) are errors",
    )
