"""Benchmark loaders: every source format of HotpotQA, MuSiQue, 2WikiMultiHopQA and Bamboogle -> `QAExample`.

`load_benchmark(name, file_or_hub_name)` detects the format from the content; `sample_path` /
`load_sample` give the small samples shipped in `samples/` (in the benchmarks' own formats);
`load_corpus` reads a passage corpus (title/text records).
"""

from .corpus import CorpusResult, Passage, load_corpus
from .example import BENCHMARKS, QAExample
from .loaders import (
    ALIASES,
    BenchmarkError,
    LoadResult,
    canonical_benchmark,
    load_benchmark,
    load_sample,
    sample_path,
)

__all__ = [
    "ALIASES",
    "BENCHMARKS",
    "BenchmarkError",
    "CorpusResult",
    "LoadResult",
    "Passage",
    "QAExample",
    "canonical_benchmark",
    "load_benchmark",
    "load_corpus",
    "load_sample",
    "sample_path",
]
