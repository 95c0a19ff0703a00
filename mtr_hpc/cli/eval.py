"""`mtr eval --config F [key=value ...] --out DIR`: models x settings x benchmarks, EM/F1 tables, plots.

Writes predictions.jsonl (resumable journal), results.json, report.md and PNG plots into the run
directory; prints a one-line JSON summary on stdout and the main table on stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ._stage import add_stage_args, overrides_of


def register(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate models (direct / with tools) on the benchmarks: EM/F1 tables and plots",
        description="Evaluate every model x setting (direct, tools in each of `envs`) x benchmark of the "
        "config; resumable.",
    )
    add_stage_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..stages import run_stage

    summary = run_stage("eval", args.config, overrides_of(args))
    report = Path(summary["out"]) / "report.md"
    print(report.read_text(encoding="utf-8"), file=sys.stderr)
    print(json.dumps({**summary, "report": str(report)}))
    return 0
