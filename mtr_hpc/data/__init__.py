"""Benchmark loaders: every source format of HotpotQA, MuSiQue, 2WikiMultiHopQA and Bamboogle -> `QAExample`.

`load_benchmark(name, file_or_hub_name)` detects the format from the content; `sample_path` /
`load_sample` give the small samples shipped in `samples/` (in the benchmarks' own formats);
`load_corpus` reads a passage corpus (title/text records); `sample_corpus_path` is the one shipped.

`QAExample.evidence` keys, present only when the source has them:

| key | value | from |
|---|---|---|
| `paragraphs` | [{"title", "text", "is_supporting"}] (+ `sentences` for HotpotQA/2Wiki, whose `supporting_facts` index them; + `idx` for MuSiQue, which `paragraph_support_idx` points at) | HotpotQA/2Wiki `context`, MuSiQue `paragraphs` |
| `supporting_facts` | [[title, sentence_index]] | HotpotQA, 2Wiki |
| `decomposition` | [{"question", "answer", ...}]: MuSiQue keeps `paragraph_support_idx`, `id`, `document_id`; Bamboogle adds `answers` (all sub-answers) | MuSiQue `question_decomposition`, Bamboogle `Q1/A1/Q2/A2` |
| `triples` | [[subject, relation, object]] | 2Wiki `evidences` |
| `level` | "easy" / "medium" / "hard" | HotpotQA |
| `answerable` | bool | MuSiQue |
| `answer_id` | Wikidata id of the answer | 2Wiki |

qtype: HotpotQA `type` (bridge/comparison); 2Wiki `type` (comparison/inference/compositional/
bridge_comparison); MuSiQue the hop count of the id ("3hop1__..." -> "3hop"); Bamboogle "2hop"; else None.
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
    sample_corpus_path,
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
    "sample_corpus_path",
    "sample_path",
]
