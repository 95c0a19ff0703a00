"""Write the benchmark samples shipped in `mtr_hpc/data/samples/` from the real benchmark files.

Each sample keeps its source's own format (so loading a sample exercises the real loader) and is
deterministic. A sample holds a number of the project's held-out questions (`data.splits`) and a number
of its train questions, each taken from the start of the file round-robin over the question types, so that
every type is represented (HotpotQA bridge/comparison, MuSiQue hop patterns, 2Wiki's four types). Held-out
questions are counted, not left to the hash: evaluation needs at least 60 a benchmark for its intervals.

Only questions whose supporting pages the shipped corpus holds are taken for HotpotQA and 2Wiki, so the
`retrieval` environment can answer them: HotpotQA's are the 100 distractor-setting questions plus the
full-wiki questions whose retrieved paragraphs include every supporting page (a question in both files is
kept once, from the distractor file); 2Wiki's are those whose supporting pages the 2Wiki corpus holds.

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

from mtr_hpc.data.fields import record_id  # noqa: E402
from mtr_hpc.data.loaders import SAMPLE_CORPUS, SAMPLE_FILES, SAMPLES_DIR  # noqa: E402
from mtr_hpc.data.source import read_records  # noqa: E402
from mtr_hpc.data.splits import is_heldout_id  # noqa: E402
from mtr_hpc.errors import MtrError  # noqa: E402
from mtr_hpc.io import atomic_write, atomic_write_text, read_json  # noqa: E402

Key = Callable[[dict[str, Any]], str]


def _musique_hops(rec: dict[str, Any]) -> str:
    return rec["id"].split("hop")[0]


def _musique_pattern(rec: dict[str, Any]) -> str:
    return rec["id"].split("__")[0]


# (benchmark, source files under DATA_DIR, held-out questions, train questions (None: all), balance keys:
# outer, inner). HotpotQA's two files hold 57 held-out questions with their pages, all taken.
SOURCES: list[tuple[str, tuple[str, ...], int | None, int | None, tuple[Key, ...]]] = [
    (
        "hotpotqa",
        ("hotpotqa/hotpot_dev_distractor_first100.json", "hotpotqa/hotpot_dev_fullwiki_500subset.jsonl"),
        None,
        None,
        (lambda r: r["type"],),
    ),
    (
        "musique",
        ("musique/musique_ans_v1.0_dev_noparagraphs.json",),
        64,
        100,
        (_musique_hops, _musique_pattern),
    ),
    ("2wiki", ("2wikimultihopqa/2wiki_dev_4000subset_evidences.json",), 64, 100, (lambda r: r["type"],)),
    ("bamboogle", ("bamboogle/bamboogle_with_decomp.json",), None, None, ()),
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


def self_covered(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records whose own context paragraphs include every supporting page."""
    return [r for r in records if all(t in dict(r["context"]) for t, _ in r["supporting_facts"])]


def unique_questions(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first record of each question text: a question under two ids could fall on both sides of
    the split."""
    seen: set[str] = set()
    kept = []
    for rec in records:
        if rec["question"] not in seen:
            seen.add(rec["question"])
            kept.append(rec)
    return kept


def split_counts(
    records: list[dict[str, Any]],
    benchmark: str,
    heldout: int | None,
    train: int | None,
    keys: tuple[Key, ...],
) -> list[dict[str, Any]]:
    """`heldout` held-out and `train` train records (None: all of them), each part balanced over `keys`;
    the file order is kept."""
    if (heldout, train) != (None, None) and not all(r.get("_id") or r.get("id") for r in records):
        # An id made of the position in the file would change when records are left out.
        raise MtrError(f"{benchmark}: records without an id can only be taken whole")
    parts = {True: [], False: []}
    for index, rec in enumerate(records):
        parts[is_heldout_id(benchmark, record_id(rec, benchmark, index))].append(index)
    chosen: list[int] = []
    for is_held, n in ((True, heldout), (False, train)):
        indices = parts[is_held]
        if n is not None:
            # balanced_first keeps the order it is given: pick positions within the part.
            part = balanced_first([{**records[i], "_pos": k} for k, i in enumerate(indices)], n, keys)
            indices = [indices[r["_pos"]] for r in part]
        chosen.extend(indices)
    return [records[i] for i in sorted(chosen)]


def _read(path: Path) -> list[dict[str, Any]]:
    _, records = read_records(path)
    return [raw.value for raw in records]


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
    for benchmark, rels, heldout, train, keys in SOURCES:
        records = [rec for rel in rels for rec in _read(data_dir / rel)]
        if benchmark == "hotpotqa":
            records = unique_questions(self_covered(records))
        elif benchmark == "2wiki":
            records = covered(records, corpus_titles)
        records = split_counts(records, benchmark, heldout, train, keys)
        path = out_dir / SAMPLE_FILES[benchmark]
        atomic_write_text(path, dump_array(records))
        path.chmod(0o644)  # package data: the temp file of an atomic write is created owner-only
        sizes[path.name] = path.stat().st_size
        written[benchmark] = records
        held = sum(is_heldout_id(benchmark, record_id(r, benchmark, i)) for i, r in enumerate(records))
        print(
            f"{benchmark}: {len(records)} records, {held} held-out -> {path} ({sizes[path.name]} bytes)",
            file=sys.stderr,
        )
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
