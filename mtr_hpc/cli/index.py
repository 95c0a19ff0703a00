"""`mtr index build|search`: an on-disk BM25 index of a passage corpus (see `mtr_hpc.retrievers`)."""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "index",
        help="build or search an on-disk BM25 index of a passage corpus",
        description="Index a corpus (JSON lines of {title, text} or FlashRAG {id, contents}, gzipped or not) "
        "for the retrieval environment (retrieval.corpus=DIR), or try searching one.",
    )
    sub = p.add_subparsers(dest="index_command", metavar="ACTION")
    b = sub.add_parser("build", help="index a corpus file into a directory (resumes an interrupted build)")
    b.add_argument("--corpus", required=True, help="corpus file (.jsonl / .jsonl.gz), or `sample`")
    b.add_argument("--out", required=True, help="index directory to write")
    b.add_argument(
        "--force", action="store_true", help="replace an existing index (kept until the new one is done)"
    )
    b.add_argument(
        "--skip-bad", action="store_true", help="skip malformed records (counted) instead of stopping"
    )
    b.add_argument(
        "--shard-docs", type=int, default=1_000_000, help="passages per shard (bounds build memory)"
    )
    b.add_argument("--k1", type=float, default=1.5, help="BM25's k1")
    b.add_argument("--b", type=float, default=0.75, help="BM25's b")
    b.add_argument(
        "--kind", choices=("bm25", "dense"), default="bm25", help="dense: encoder embeddings in faiss"
    )
    b.add_argument(
        "--encoder", default="", help="dense: a local encoder directory (e.g. intfloat/e5-base-v2)"
    )
    b.add_argument("--device", default="cpu", help="dense: where the encoder runs (cuda on a GPU node)")
    b.add_argument("--batch-size", type=int, default=64, help="dense: passages embedded together")
    b.add_argument("--max-length", type=int, default=256, help="dense: tokens of a passage the encoder reads")
    b.add_argument("--no-progress", action="store_true")
    b.set_defaults(func=build)
    s = sub.add_parser("search", help="print the best passages of a query")
    s.add_argument("index", help="index directory, or a corpus file (indexed into the cache once)")
    s.add_argument("query", nargs="+", help="the query (several are searched in one batch)")
    s.add_argument("-k", "--top-k", type=int, default=3)
    s.add_argument("--json", action="store_true", help="one JSON line per query")
    s.add_argument("--encoder", default="", help="dense: the encoder, when it moved since the build")
    s.set_defaults(func=search)
    p.set_defaults(func=lambda args: (p.print_help(sys.stderr), 2)[1])


def build(args: argparse.Namespace) -> int:
    from ..retrievers.bm25_index import IndexBuildConfig, build_index
    from ..retrievers.open import corpus_path

    def log(message: str) -> None:
        print(message, file=sys.stderr)

    corpus, progress = corpus_path(args.corpus), not args.no_progress
    if args.kind == "dense":
        from ..retrievers.dense import DenseBuildConfig, build_dense_index

        dcfg = DenseBuildConfig(
            args.encoder, args.batch_size, args.max_length, args.device, skip_bad=args.skip_bad
        )
        meta = build_dense_index(corpus, args.out, dcfg, force=args.force, progress=progress, log=log)
        layout = "a flat faiss index"
    else:
        cfg = IndexBuildConfig(k1=args.k1, b=args.b, shard_docs=args.shard_docs, skip_bad=args.skip_bad)
        meta = build_index(corpus, args.out, cfg, force=args.force, progress=progress, log=log)
        layout = f"{len(meta['shards'])} shard(s)"
    skipped = f", {meta['skipped']:,} malformed records skipped" if meta["skipped"] else ""
    noun = "passage" if meta["docs"] == 1 else "passages"
    print(f"indexed {meta['docs']:,} {noun} in {layout}, {meta['build_s']} s{skipped}: {args.out}")
    return 0


def search(args: argparse.Namespace) -> int:
    import json

    from ..retrievers.open import open_path

    engine = open_path(args.index, encoder=args.encoder)
    for query, hits in zip(args.query, engine.search_many(args.query, args.top_k), strict=True):
        if args.json:
            print(json.dumps({"query": query, "hits": [{**h.doc, "score": h.score} for h in hits]}))
            continue
        print(f"# {query}")
        if not hits:
            print("  (nothing: no word of the query is in the corpus)")
        for i, h in enumerate(hits, 1):
            text = h.doc["text"]
            print(f"  {i}. [{h.score:.2f}] {h.doc['title']}: {text[:200]}{'...' if len(text) > 200 else ''}")
    return 0
