"""Write the small benchmark samples shipped in `mtr_hpc/data/samples/` from the real benchmark files.

Each sample keeps its source's own format (so loading a sample exercises the real loader) and is
deterministic: the first records of the file, taken round-robin over the question types so that every
type is represented (HotpotQA bridge/comparison, MuSiQue hop patterns, 2Wiki's four types).

    python tools/make_samples.py [DATA_DIR] [--out DIR]

DATA_DIR defaults to `../shared/data` beside the repository.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mtr_hpc.errors import MtrError  # noqa: E402
from mtr_hpc.io import atomic_write_text, read_json  # noqa: E402
from mtr_hpc.data.loaders import SAMPLE_FILES, SAMPLES_DIR  # noqa: E402

# (benchmark, source file under DATA_DIR, number of records or None for all, grouping key for balance)
SOURCES: list[tuple[str, str, int | None, Callable[[dict[str, Any]], str] | None]] = [
    ("hotpotqa", "hotpotqa/hotpot_dev_distractor_first100.json", 60, lambda r: r["type"]),
    ("musique", "musique/musique_ans_v1.0_dev_noparagraphs.json", 60, lambda r: r["id"].split("__")[0]),
    ("2wiki", "2wikimultihopqa/2wiki_dev_4000subset_evidences.json", 60, lambda r: r["type"]),
    ("bamboogle", "bamboogle/bamboogle_with_decomp.json", None, None),
]


def balanced_first(records: list[dict[str, Any]], n: int, key: Callable[[dict[str, Any]], str]) -> list[dict]:
    """The first `n` records taken round-robin over `key` groups, returned in file order."""
    groups: dict[str, list[int]] = {}
    for i, rec in enumerate(records):
        groups.setdefault(key(rec), []).append(i)
    queues = [list(reversed(idx)) for idx in groups.values()]
    chosen: list[int] = []
    while len(chosen) < n and any(queues):
        for queue in queues:
            if queue and len(chosen) < n:
                chosen.append(queue.pop())
    return [records[i] for i in sorted(chosen)]


def dump_array(records: list[dict[str, Any]]) -> str:
    """A JSON array with one record per line: the source format, readable in a diff."""
    return "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n]\n"


def make_samples(data_dir: Path, out_dir: Path) -> dict[str, int]:
    sizes = {}
    for benchmark, rel, n, key in SOURCES:
        records = read_json(data_dir / rel)
        if n is not None:
            records = balanced_first(records, n, key) if key else records[:n]
        path = out_dir / SAMPLE_FILES[benchmark]
        atomic_write_text(path, dump_array(records))
        sizes[path.name] = path.stat().st_size
        print(f"{benchmark}: {len(records)} records -> {path} ({sizes[path.name]} bytes)", file=sys.stderr)
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
