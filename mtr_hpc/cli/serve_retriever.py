"""`mtr serve-retriever`: a search engine over HTTP in Search-R1's protocol (see `retrievers.server`)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve-retriever",
        help="serve an index over HTTP (Search-R1's POST /retrieve) for retrieval.backend=http",
        description="Serve an index directory (or a corpus file, indexed into the cache once): "
        "POST /retrieve {queries, topk, return_scores}, POST /page {title}, GET /health.",
    )
    p.add_argument("index", help="index directory (`mtr index build`), a corpus file, or `sample`")
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve other nodes")
    p.add_argument("--port", type=int, default=8010, help="0 picks a free port (printed on stderr)")
    p.add_argument("--topk", type=int, default=3, help="passages per query when a request names none")
    p.add_argument("--threads", type=int, default=0, help="search threads (0: every core)")
    p.add_argument("--encoder", default="", help="dense: the encoder, when it moved since the build")
    p.add_argument("--device", default="cpu", help="dense: where the query encoder runs")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..retrievers.open import open_path
    from ..retrievers.server import RetrieverServeConfig, RetrieverServer

    engine = open_path(args.index, threads=args.threads, encoder=args.encoder, device=args.device)
    engine.warm_up()  # compile the search before the first request
    server = RetrieverServer(engine, RetrieverServeConfig(args.host, args.port, args.topk))

    from ._serve import serve_until_stopped

    n = getattr(engine, "n_docs", None)
    banner = f"serving {engine.path} ({'?' if n is None else f'{n:,}'} passages) at {server.url}"
    return serve_until_stopped(server, banner, "serve-retriever")
