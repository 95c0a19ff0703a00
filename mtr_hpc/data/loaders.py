"""`load_benchmark`: any supported benchmark file (or hub dataset) -> `LoadResult` of `QAExample`s.

The format is detected from content, never from the file name: JSON array vs JSON lines by the first
character (`source`), then the record layout by the field names of the first record: FlashRAG
(`golden_answers`, any benchmark) or the benchmark's own layout (`hotpotqa`, `musique`, `twowiki`,
`bamboogle` modules). A file whose fields belong to another benchmark (a MuSiQue file loaded as
HotpotQA) is refused as a whole instead of being read with its evidence silently dropped.

Bad records (malformed JSON line, not an object, missing or mistyped field, duplicate id) raise a
`DataError` naming file, line/record and field; with `skip_bad=True` they are collected in
`LoadResult.skipped` instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError, MtrError
from . import bamboogle, flashrag, hotpotqa, musique, twowiki
from .example import BENCHMARKS, QAExample
from .fields import FieldError
from .hub import read_hub_records
from .source import RawRecord, is_hub_source, read_records

_NATIVE: dict[str, Any] = {"hotpotqa": hotpotqa, "musique": musique, "2wiki": twowiki, "bamboogle": bamboogle}

# Keys are compared without case, "-", "_" and spaces ("2WikiMultiHopQA", "hotpot_qa", "musique-ans").
ALIASES: dict[str, str] = {
    "hotpotqa": "hotpotqa",
    "hotpot": "hotpotqa",
    "hotpotqadistractor": "hotpotqa",
    "hotpotqafullwiki": "hotpotqa",
    "musique": "musique",
    "musiqueans": "musique",
    "musiquefull": "musique",
    "2wiki": "2wiki",
    "2wikimultihopqa": "2wiki",
    "2wikimultihop": "2wiki",
    "2wikimqa": "2wiki",
    "twowiki": "2wiki",
    "bamboogle": "bamboogle",
}

SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
SAMPLE_FILES = {
    "hotpotqa": "hotpotqa_dev_sample.json",
    "musique": "musique_ans_dev_sample.json",
    "2wiki": "2wiki_dev_evidences_sample.json",
    "bamboogle": "bamboogle_with_decomp.json",
}
# The `retrieval` environment's default passage corpus (gzipped JSON lines of {title, text}).
SAMPLE_CORPUS = "passages_sample.jsonl.gz"


class BenchmarkError(MtrError):
    """An unknown benchmark name."""

    def __init__(self, name: str):
        self.name = name
        super().__init__(f"unknown benchmark '{name}'; valid names: {', '.join(BENCHMARKS)}")


@dataclass
class LoadResult:
    """What a load produced: the examples, the records skipped with `skip_bad`, where and in which format.

    `format` is "<layout>/<container>": layout one of hotpotqa, musique, 2wiki, bamboogle, flashrag;
    container json, jsonl or hub. `path` is the file, or the hub dataset and split.
    """

    benchmark: str
    examples: list[QAExample]
    skipped: list[DataError] = field(default_factory=list)
    path: str = ""
    format: str = ""

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)


def canonical_benchmark(name: str) -> str:
    """The canonical name of a benchmark or one of its aliases (case, `_`, `-` and spaces do not matter)."""
    key = "".join(ch for ch in str(name).lower() if ch not in "-_ ")
    if key not in ALIASES:
        raise BenchmarkError(str(name))
    return ALIASES[key]


def sniff_layout(rec: Mapping[str, Any]) -> str | None:
    """The layout that a record's field names reveal, or None when they fit any benchmark."""
    keys = set(rec)
    if "golden_answers" in keys:
        return "flashrag"
    if keys & {"Question", "Q1"}:
        return "bamboogle"
    if keys & {"question_decomposition", "paragraphs", "answer_aliases", "answerable"}:
        return "musique"
    if keys & {"evidences", "answer_id", "entity_ids"}:
        return "2wiki"
    if "level" in keys:
        return "hotpotqa"
    if {"title", "text"} <= keys and "question" not in keys:
        return "corpus"
    return None


def _layout_for(benchmark: str, rec: Mapping[str, Any], path: str, where: str) -> str:
    layout = sniff_layout(rec)
    if layout == "corpus":
        raise DataError(path, where, None, "holds passages (title, text), not questions; use load_corpus")
    if layout not in (None, "flashrag", benchmark):
        raise DataError(
            path,
            where,
            None,
            f"looks like a {layout} file (fields {', '.join(sorted(rec))}), not {benchmark}",
        )
    return layout or benchmark


def _convert_one(benchmark: str, layout: str | None, raw: RawRecord, path: str) -> QAExample:
    """One record as an example; every problem of the record is a `DataError` (skippable)."""
    if isinstance(raw.value, DataError):
        raise raw.value
    if not isinstance(raw.value, Mapping):
        raise DataError(path, raw.where, None, "not a JSON object")
    try:
        if layout == "flashrag":
            return flashrag.convert(raw.value, raw.index, benchmark)
        return _NATIVE[benchmark].convert(raw.value, raw.index)
    except FieldError as exc:
        raise DataError(path, raw.where, exc.field, exc.message) from None


def _check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ConfigError("limit", f"must be a non-negative integer or None, got {limit!r}")


def convert_records(
    benchmark: str,
    records: Iterable[RawRecord],
    *,
    path: str,
    container: str,
    skip_bad: bool = False,
    limit: int | None = None,
) -> LoadResult:
    """Map raw records through the converter of the detected layout, collecting or raising bad ones."""
    result = LoadResult(benchmark, [], [], path, "")
    layout: str | None = None
    first_seen: dict[str, str] = {}
    n_records = 0
    for raw in records:
        n_records += 1
        if limit is not None and len(result.examples) >= limit:
            break
        if layout is None and isinstance(raw.value, Mapping):
            # The first object decides the layout of the whole file; a wrong benchmark is not skippable.
            layout = _layout_for(benchmark, raw.value, path, raw.where)
        try:
            example = _convert_one(benchmark, layout, raw, path)
            if example.id in first_seen:
                where = first_seen[example.id]
                raise DataError(path, raw.where, "id", f"duplicate id '{example.id}' (first at {where})")
        except DataError as exc:
            if not skip_bad:
                raise
            result.skipped.append(exc)
            continue
        first_seen[example.id] = raw.where
        result.examples.append(example)
    if n_records == 0:
        raise DataError(path, None, None, "holds no records")
    result.format = f"{layout or benchmark}/{container}"
    return result


def load_benchmark(
    benchmark: str,
    source: str | Path,
    *,
    skip_bad: bool = False,
    split: str | None = None,
    limit: int | None = None,
) -> LoadResult:
    """Load `source` (a local file, or `hf://owner/name[:config]`) as `benchmark` (a name or alias).

    `split` selects a hub split; a local file is a single split, so giving one there is an error.
    `limit` stops after that many examples.
    """
    name = canonical_benchmark(benchmark)
    _check_limit(limit)
    if is_hub_source(source):
        label, records = read_hub_records(str(source), split)
        container = "hub"
    else:
        path = Path(source)
        if split is not None:
            raise DataError(path, None, "split", "applies to hub datasets only; a local file is one split")
        container, records = read_records(path)
        label = str(path)
    return convert_records(name, records, path=label, container=container, skip_bad=skip_bad, limit=limit)


def sample_path(benchmark: str) -> Path:
    """The sample file of a benchmark shipped in the package (in the benchmark's source format)."""
    return SAMPLES_DIR / SAMPLE_FILES[canonical_benchmark(benchmark)]


def sample_corpus_path() -> Path:
    """The passage corpus shipped in the package (the `retrieval` environment's default)."""
    return SAMPLES_DIR / SAMPLE_CORPUS


def load_sample(benchmark: str) -> list[QAExample]:
    return load_benchmark(benchmark, sample_path(benchmark)).examples
