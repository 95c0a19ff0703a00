"""`mtr tools validate TOOLS.jsonl [--json]`: check tool interfaces, one per line (design §7).

Counts, output, warnings, `--strict` and exit status are those of `mtr validate`; a name already
declared on an earlier line makes the later line invalid with the code `duplicate_name`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .validate import Summary, add_strict_flag


def run_validate(args: argparse.Namespace) -> int:
    from ..toolspec import tool_name, tool_warnings, validate_tool
    from ..trace.io import iter_trace_lines

    summary = Summary(str(args.tools))
    seen: dict[str, int] = {}
    for lineno, obj, err in iter_trace_lines(args.tools):
        where = f"line {lineno}"
        if err is not None:
            summary.add(where, [("bad_json", str(err))])
            continue
        issues = [(i.code, str(i)) for i in validate_tool(obj, strict=args.strict)]
        warnings = [] if args.strict else [(w.code, str(w)) for w in tool_warnings(obj)]
        name = tool_name(obj)
        if name is not None:
            where += f" ({name[:64]})"
            if name in seen:
                issues.append(("duplicate_name", f"'{name[:64]}' already declared on line {seen[name]}"))
            else:
                seen[name] = lineno
        summary.add(where, issues, warnings)
    return summary.emit(args.json, "tools")


def register(subparsers) -> None:
    p = subparsers.add_parser("tools", help="tool interfaces", description="Work with tool interfaces.")
    sub = p.add_subparsers(dest="tools_command", metavar="ACTION", required=True)
    v = sub.add_parser(
        "validate",
        help="validate a tools JSONL file",
        description="Validate tool interfaces (one per line): names, descriptions, parameter and x-returns schemas.",
    )
    v.add_argument("tools", type=Path, metavar="TOOLS.jsonl")
    v.add_argument("--json", action="store_true", help="print one JSON object with the counts on stdout")
    add_strict_flag(v)
    v.set_defaults(func=run_validate)
