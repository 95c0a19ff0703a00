"""`mtr serve`: an OpenAI-compatible chat endpoint (see `mtr_hpc.llm.server`)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve a model over an OpenAI-compatible HTTP API",
        description="OpenAI-compatible server: POST /v1/chat/completions, GET /v1/models, /health, /stats.",
    )
    p.add_argument(
        "--model", default="smollm2-135m", help="model name or HF directory (transformers backend)"
    )
    p.add_argument("--backend", choices=("transformers", "echo"), default="transformers")
    p.add_argument(
        "--echo",
        action="store_const",
        const="echo",
        dest="backend",
        help="same as --backend echo: answer without a model (schema instance or the last user message)",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed on stderr)")
    p.add_argument("--max-batch", type=int, default=8, help="most requests generated together")
    p.add_argument("--latency-ms", type=float, default=0.0, help="delay added to every completion")
    p.add_argument("--fail-rate", type=float, default=0.0, help="fraction of completions answered with 500")
    p.add_argument("--fail-first", type=int, default=0, help="answer the first N completions with 500")
    p.add_argument("--seed", type=int, default=0, help="seed of the --fail-rate draws")
    p.add_argument("--device", default="cpu", help="torch device of the transformers backend")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--served-model-name", default=None, help="model id reported by /v1/models")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..llm.server import LLMServer, ServeConfig

    cfg = ServeConfig(
        model=args.model,
        backend=args.backend,
        host=args.host,
        port=args.port,
        max_batch=args.max_batch,
        latency_ms=args.latency_ms,
        fail_rate=args.fail_rate,
        fail_first=args.fail_first,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
        served_model_name=args.served_model_name,
    )
    server = LLMServer(cfg)

    from ._serve import serve_until_stopped

    banner = f"mtr serve: {cfg.backend} backend, model '{cfg.model_id}', listening on {server.url}"
    return serve_until_stopped(server, banner, "serve")
