"""The on-disk BM25 index (`mtr_hpc.retrievers.bm25_index`) at scale, and beside rank_bm25.

Scale: a generated corpus of `--passages` passages of `--words` words (a Zipf vocabulary of `--vocab`
words, exponent `--zipf`, a fixed seed), three passages per title as wiki-18's pages are. The index is
built in a child process (`mtr index build`), so its wall time and peak memory are the build's own.
Then `--queries` queries of 2 to 6 words drawn from random passages are answered at top 3, one at a
time and in batches of 64 (after a warm-up batch, so numba's compilation is not counted). The figures
are extrapolated linearly to wiki-18's 21,015,324 passages.

Fidelity (`--shipped`, on by default): the shipped corpus indexed both ways, rank_bm25's `BM25Okapi`
over the same tokens (the engine of earlier versions) and this index; the share of the benchmarks'
questions (and of "<title> <relation>" lookups) with the same top-3 titles, and each engine's speed.

    .venv/bin/python tools/bench_retrieval.py [--passages 1000000] [--json] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WIKI18 = 21_015_324


def _word(i: int) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"
    out = ""
    i += 27  # skip one- and most two-letter words
    while i:
        i, r = divmod(i, 26)
        out = letters[r] + out
    return out


def generate_corpus(path: Path, n: int, words: int, vocab: int, zipf: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, vocab + 1) ** zipf
    p /= p.sum()
    lexicon = np.array([_word(i) for i in range(vocab)], dtype=object)
    chunk = 20_000
    with open(path, "w") as fh:
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            ids = rng.choice(vocab, size=(m, words), p=p)
            for j in range(m):
                doc = start + j
                text = " ".join(lexicon[ids[j]])
                fh.write(json.dumps({"id": str(doc), "contents": f'"Page {doc // 3}"\n{text}'}) + "\n")


def queries_of(path: Path, n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    with open(path) as fh:
        sample = [line for line in fh if rng.random() < 2 * n / 1_000_000 + 1e-4][: 4 * n]
    out = []
    for line in rng.sample(sample, min(n, len(sample))):
        words = json.loads(line)["contents"].split("\n", 1)[1].split()
        out.append(" ".join(rng.sample(words, rng.randint(2, 6))))
    return out


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def scale(args) -> dict:
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-retrieval-"))
    work.mkdir(parents=True, exist_ok=True)
    corpus = work / "corpus.jsonl"
    t0 = time.perf_counter()
    if not corpus.exists():
        generate_corpus(corpus, args.passages, args.words, args.vocab, args.zipf, args.seed)
    gen_s = time.perf_counter() - t0
    out = work / "index"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mtr_hpc.cli",
            "index",
            "build",
            "--corpus",
            str(corpus),
            "--out",
            str(out),
            "--no-progress",
        ],
        check=True,
        cwd=ROOT,
    )
    build_s = time.perf_counter() - t0
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    from mtr_hpc.retrievers.bm25_index import BM25Index

    t0 = time.perf_counter()
    index = BM25Index(out)
    load_s = time.perf_counter() - t0
    qs = queries_of(corpus, args.queries, args.seed)
    index.search_many(qs[:64], 3)  # warm-up: numba compiles here
    t0 = time.perf_counter()
    for q in qs[: args.single]:
        index.search_many([q], 3)
    single = args.single / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(0, len(qs), 64):
        index.search_many(qs[i : i + 64], 3)
    batched = len(qs) / (time.perf_counter() - t0)
    disk = du(out)
    factor = WIKI18 / args.passages
    res = {
        "passages": args.passages,
        "corpus_bytes": corpus.stat().st_size,
        "generate_s": round(gen_s, 1),
        "build_s": round(build_s, 1),
        "build_peak_rss_gb": round(peak_gb, 2),
        "index_bytes": disk,
        "load_s": round(load_s, 2),
        "queries": len(qs),
        "qps_single": round(single, 1),
        "qps_batch64": round(batched, 1),
        "wiki18_build_h_extrapolated": round(build_s * factor / 3600, 2),
        "wiki18_index_gb_extrapolated": round(disk * factor / 1e9, 1),
    }
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return res


def shipped() -> dict:
    from rank_bm25 import BM25Okapi

    from mtr_hpc.data import load_corpus, load_sample, sample_corpus_path
    from mtr_hpc.retrievers.bm25_index import BM25Index, build_index
    from mtr_hpc.sim.text import search_query, tokens

    passages = load_corpus(sample_corpus_path()).passages
    rng = random.Random(0)
    qs = [
        search_query(ex.question)
        for b in ("hotpotqa", "musique", "2wiki", "bamboogle")
        for ex in load_sample(b)
    ]
    qs += [
        f"{p.title} {rel}"
        for p, rel in zip(rng.sample(passages, 300), ["director", "born", "spouse"] * 100, strict=True)
    ]
    qs = [q for q in qs if tokens(q)]
    t0 = time.perf_counter()
    lib = BM25Okapi([tokens(f"{p.title} {p.text}") or ["_"] for p in passages])
    lib_build = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        build_index(sample_corpus_path(), Path(tmp) / "ix", progress=False)
        ix_build = time.perf_counter() - t0
        index = BM25Index(Path(tmp) / "ix")
        t0 = time.perf_counter()
        ref = [np.argsort(-lib.get_scores(tokens(q)), kind="stable")[:3] for q in qs]
        lib_s = time.perf_counter() - t0
        index.search_many(qs[:8], 3)
        t0 = time.perf_counter()
        got = [index.search_many([q], 3)[0] for q in qs]
        ix_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(0, len(qs), 64):
            index.search_many(qs[i : i + 64], 3)
        ix_batch_s = time.perf_counter() - t0
    same = sum(
        {passages[i].title for i in r} == {h.doc["title"] for h in g} for r, g in zip(ref, got, strict=True)
    )
    ordered = sum(
        [passages[i].title for i in r] == [h.doc["title"] for h in g] for r, g in zip(ref, got, strict=True)
    )
    return {
        "shipped_passages": len(passages),
        "queries": len(qs),
        "same_top3_titles": round(same / len(qs), 4),
        "same_top3_in_order": round(ordered / len(qs), 4),
        "rank_bm25_build_s": round(lib_build, 2),
        "index_build_s": round(ix_build, 2),
        "rank_bm25_qps": round(len(qs) / lib_s, 1),
        "index_qps_single": round(len(qs) / ix_s, 1),
        "index_qps_batch64": round(len(qs) / ix_batch_s, 1),
        "speedup_single": round(lib_s / ix_s, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--passages", type=int, default=1_000_000)
    ap.add_argument("--words", type=int, default=100)
    ap.add_argument("--vocab", type=int, default=200_000)
    ap.add_argument("--zipf", type=float, default=1.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--queries", type=int, default=1024)
    ap.add_argument("--single", type=int, default=256, help="queries timed one at a time")
    ap.add_argument("--keep", default="", help="work directory to keep (corpus reused if present)")
    ap.add_argument("--no-shipped", action="store_true", help="skip the comparison with rank_bm25")
    ap.add_argument("--no-scale", action="store_true", help="skip the generated corpus")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    res = {"cpu": _cpu(), "threads": os.cpu_count()}
    if not args.no_shipped:
        res["shipped"] = shipped()
    if not args.no_scale:
        res["scale"] = scale(args)
    if args.json:
        print(json.dumps(res, indent=1))
        return
    for part, figures in res.items():
        if isinstance(figures, dict):
            print(f"[{part}]")
            for k, v in figures.items():
                print(f"  {k:32s} {v:,}" if isinstance(v, int | float) else f"  {k:32s} {v}")
        else:
            print(f"{part}: {figures}")


def _cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return "unknown"
    name = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "?")
    return name + (" avx512_bf16" if "avx512_bf16" in out else " avx2" if "avx2" in out else "")


if __name__ == "__main__":
    main()
