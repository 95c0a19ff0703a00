"""`mtr score`: EM/F1 of a predictions file against a benchmark file (design §7).

Prints one JSON object on stdout, `{"n", "em", "f1", "by_type", "missing", "extra"}` (unrounded means,
0-1 scale); a summary for people goes to stderr. The predictions file is JSON lines of
`{"id", "prediction"}`; any malformed line is an error naming the file and line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..data.example import BENCHMARKS
from ..errors import DataError
from ..io import iter_jsonl

_SHOW_SKIPPED = 10  # skipped gold records listed on stderr; the rest are counted


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "score",
        help="EM/F1 of predictions against a benchmark file",
        description="Score a predictions JSONL ({id, prediction} per line) against a benchmark file "
        "with the benchmark's official EM/F1 convention; prints one JSON object on stdout.",
    )
    p.add_argument("--benchmark", required=True, choices=BENCHMARKS, help="scoring convention and loader")
    p.add_argument("--gold", required=True, type=Path, help="benchmark file any loader reads")
    p.add_argument("--pred", required=True, type=Path, help="JSONL of {'id', 'prediction'} lines")
    p.add_argument(
        "--skip-bad", action="store_true", help="skip malformed gold records instead of failing on them"
    )
    p.set_defaults(func=run)


def read_predictions(path: str | Path) -> dict[str, str]:
    """Example id -> predicted answer, from JSON lines of `{"id", "prediction"}`.

    Ids may be strings or integers (read as their decimal string, as loaders make ids). A line that is
    not a JSON object, lacks a field, has a non-string prediction or repeats an id raises `DataError`.
    """
    predictions: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for lineno, obj in iter_jsonl(path):
        where = f"line {lineno}"
        if not isinstance(obj, dict):
            raise DataError(path, where, None, f"expected a JSON object, got {type(obj).__name__}")
        for key in ("id", "prediction"):
            if key not in obj:
                raise DataError(path, where, key, "is missing")
        raw_id = obj["id"]
        if isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
            raise DataError(path, where, "id", f"must be a string, got {type(raw_id).__name__}")
        pred = obj["prediction"]
        if not isinstance(pred, str):
            raise DataError(path, where, "prediction", f"must be a string, got {type(pred).__name__}")
        ex_id = str(raw_id)
        if ex_id in first_line:
            raise DataError(path, where, "id", f"duplicate id {ex_id!r} (first on line {first_line[ex_id]})")
        first_line[ex_id] = lineno
        predictions[ex_id] = pred
    return predictions


def run(args: argparse.Namespace) -> int:
    from ..data import load_benchmark
    from ..metrics import score_predictions

    loaded = load_benchmark(args.benchmark, args.gold, skip_bad=args.skip_bad)
    predictions = read_predictions(args.pred)
    report = score_predictions(loaded.examples, predictions, benchmark=args.benchmark)
    gold_ids = {ex.id for ex in loaded.examples}
    extra = sum(1 for pid in predictions if pid not in gold_ids)

    result = report.to_dict()
    result["extra"] = extra
    print(json.dumps(result, ensure_ascii=False))

    skipped = len(loaded.skipped)
    for err in loaded.skipped[:_SHOW_SKIPPED]:
        print(f"mtr score: skipped gold record: {err}", file=sys.stderr)
    if skipped > _SHOW_SKIPPED:
        print(f"mtr score: ... and {skipped - _SHOW_SKIPPED} more skipped gold records", file=sys.stderr)
    print(
        f"mtr score: {args.benchmark}: n={report.n} EM={report.em:.4f} F1={report.f1:.4f} "
        f"missing={report.missing} extra={extra}" + (f" skipped={skipped}" if skipped else ""),
        file=sys.stderr,
    )
    return 0
