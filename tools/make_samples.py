"""Write the small benchmark samples shipped in `mtr_hpc/data/samples/` from the real benchmark files.

Each sample keeps its source's own format (so loading a sample exercises the real loader) and is
deterministic: the first records of the file, taken round-robin over the question types so that every
type is represented (HotpotQA bridge/comparison, MuSiQue hop patterns, 2Wiki's four types). The 2Wiki
sample is drawn from the questions whose supporting pages are all in the 2Wiki passage corpus, so the
`retrieval` environment can answer them.

Also writes the passage corpus of the `retrieval` environment (`SAMPLE_CORPUS`, gzipped JSON lines of
{title, text}): the 2Wiki corpus, then the HotpotQA sample's context paragraphs whose titles it lacks.
MuSiQue's and Bamboogle's sources ship no paragraphs, so the corpus holds none of theirs.

    python tools/make_samples.py [DATA_DIR] [--out DIR]

DATA_DIR defaults to `../shared/data` beside the repository.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mtr_hpc.data.loaders import SAMPLE_CORPUS, SAMPLE_FILES, SAMPLES_DIR  # noqa: E402
from mtr_hpc.errors import MtrError  # noqa: E402
from mtr_hpc.io import atomic_write, atomic_write_text, read_json  # noqa: E402

Key = Callable[[dict[str, Any]], str]


def _musique_hops(rec: dict[str, Any]) -> str:
    return rec["id"].split("hop")[0]


def _musique_pattern(rec: dict[str, Any]) -> str:
    return rec["id"].split("__")[0]


# (benchmark, source file under DATA_DIR, number of records or None for all, balance keys: outer, inner)
# 100 records each: the held-out quarter (`data.splits`) then holds 18-25 questions per benchmark.
SOURCES: list[tuple[str, str, int | None, tuple[Key, ...]]] = [
    ("hotpotqa", "hotpotqa/hotpot_dev_distractor_first100.json", 100, (lambda r: r["type"],)),
    ("musique", "musique/musique_ans_v1.0_dev_noparagraphs.json", 100, (_musique_hops, _musique_pattern)),
    ("2wiki", "2wikimultihopqa/2wiki_dev_4000subset_evidences.json", 100, (lambda r: r["type"],)),
    ("bamboogle", "bamboogle/bamboogle_with_decomp.json", None, ()),
]
TWOWIKI_CORPUS = "2wikimultihopqa/2wiki_corpus_6119_passages.json"


def _round_robin(groups: list[list[int]], n: int) -> list[int]:
    queues = [list(reversed(g)) for g in groups]
    chosen: list[int] = []
    while len(chosen) < n and any(queues):
        for queue in queues:
            if queue and len(chosen) < n:
                chosen.append(queue.pop())
    return chosen


def _group(indices: list[int], records: list[dict[str, Any]], key: Key) -> list[list[int]]:
    groups: dict[str, list[int]] = {}
    for i in indices:
        groups.setdefault(key(records[i]), []).append(i)
    return list(groups.values())


def balanced_first(records: list[dict[str, Any]], n: int, keys: tuple[Key, ...]) -> list[dict[str, Any]]:
    """`n` records, an equal share per `keys[0]` group (as far as groups allow), each share taken
    round-robin over `keys[1]` subgroups, earliest records first; returned in file order."""
    indices = list(range(len(records)))
    if not keys:
        return records[:n]
    outer = _group(indices, records, keys[0])
    if len(keys) == 1:
        chosen = _round_robin(outer, n)
    else:
        # Per outer group, order its records round-robin over the inner key, then share n out.
        chosen = _round_robin([_round_robin(_group(g, records, keys[1]), len(g)) for g in outer], n)
    return [records[i] for i in sorted(chosen)]


def dump_array(records: list[dict[str, Any]]) -> str:
    """A JSON array with one record per line: the source format, readable in a diff."""
    return "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n]\n"


def covered(records: list[dict[str, Any]], titles: set[str]) -> list[dict[str, Any]]:
    """The records whose supporting-fact pages all have a passage in the corpus (`titles`)."""
    return [r for r in records if all(title in titles for title, _ in r["supporting_facts"])]


def build_corpus(twowiki: list[dict[str, Any]], hotpot: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The 2Wiki passages, then each HotpotQA context paragraph (sentences joined) under a new title."""
    passages = [{"title": p["title"], "text": p["text"]} for p in twowiki]
    seen = {p["title"] for p in passages}
    for rec in hotpot:
        for title, sentences in rec["context"]:
            if title not in seen:
                seen.add(title)
                passages.append({"title": title, "text": "".join(sentences).strip()})
    return passages


def write_corpus(passages: list[dict[str, str]], path: Path) -> int:
    text = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in passages)
    # mtime 0: the same passages give the same bytes, so a regenerated corpus shows no diff.
    data = gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)
    with atomic_write(path, "wb") as fh:
        fh.write(data)
    path.chmod(0o644)
    print(f"corpus: {len(passages)} passages -> {path} ({path.stat().st_size} bytes)", file=sys.stderr)
    return path.stat().st_size


def make_samples(data_dir: Path, out_dir: Path) -> dict[str, int]:
    sizes = {}
    corpus = read_json(data_dir / TWOWIKI_CORPUS)
    corpus_titles = {p["title"] for p in corpus}
    written: dict[str, list[dict[str, Any]]] = {}
    for benchmark, rel, n, keys in SOURCES:
        records = read_json(data_dir / rel)
        if benchmark == "2wiki":
            records = covered(records, corpus_titles)
        if n is not None:
            records = balanced_first(records, n, keys)
        path = out_dir / SAMPLE_FILES[benchmark]
        atomic_write_text(path, dump_array(records))
        path.chmod(0o644)  # package data: the temp file of an atomic write is created owner-only
        sizes[path.name] = path.stat().st_size
        written[benchmark] = records
        print(f"{benchmark}: {len(records)} records -> {path} ({sizes[path.name]} bytes)", file=sys.stderr)
    sizes[SAMPLE_CORPUS] = write_corpus(build_corpus(corpus, written["hotpotqa"]), out_dir / SAMPLE_CORPUS)
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", nargs="?", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=SAMPLES_DIR)
    args = parser.parse_args(argv)
    try:
        sizes = make_samples(args.data_dir, args.out)
    except MtrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"total {sum(sizes.values())} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
