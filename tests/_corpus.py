"""Corpora and indexes for tests: passages written to a corpus file, indexed by the real engine."""

from __future__ import annotations

import json
from pathlib import Path

from mtr_hpc.retrievers.bm25_index import BM25Index, build_index


def write_corpus(path: Path, records: list[tuple[str, str]], flashrag: bool = False) -> Path:
    """(title, text) records as a JSON-lines corpus: the project's {title, text}, or FlashRAG's
    {id, contents} with the title quoted on the first line, as wiki-18 has it."""
    with open(path, "w") as fh:
        for i, (title, text) in enumerate(records):
            rec = (
                {"id": str(i), "contents": f'"{title}"\n{text}'}
                if flashrag
                else {"title": title, "text": text}
            )
            fh.write(json.dumps(rec) + "\n")
    return path


def index_of(records: list[tuple[str, str]], folder: Path, **build) -> BM25Index:
    folder.mkdir(parents=True, exist_ok=True)
    corpus = write_corpus(folder / "corpus.jsonl", records)
    build_index(corpus, folder / "index", progress=False, **build)
    return BM25Index(folder / "index")
