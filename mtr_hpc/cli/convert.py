"""`mtr convert`: Hugging Face <-> Megatron-Core checkpoints.

    mtr convert hf-to-mcore --hf PATH_OR_NAME --out DIR [--tp N] [--spec sdpa|local|te] [--verify]
    mtr convert mcore-to-hf --ckpt DIR --out DIR [--hf-config PATH_OR_NAME] [--verify]

`--verify` prints one JSON object on stdout: `max_abs_logit_diff` and `argmax_agree` (HF model vs
Megatron model on a fixed prompt, fp32) and `roundtrip_exact` (the reverse conversion reproduces the
input bit for bit). Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert checkpoints between Hugging Face and Megatron-Core"
    )
    sub = parser.add_subparsers(dest="direction", metavar="DIRECTION", required=True)

    to_mc = sub.add_parser("hf-to-mcore", help="HF model directory -> Megatron checkpoint")
    to_mc.add_argument("--hf", required=True, help="HF directory, hub name, or smollm2-135m")
    to_mc.add_argument("--out", required=True, help="checkpoint directory to write")
    to_mc.add_argument("--tp", type=int, default=1, help="tensor-parallel size of the checkpoint")
    to_mc.add_argument("--spec", choices=("sdpa", "local", "te"), default="sdpa", help="layer spec naming")
    to_mc.add_argument("--vocab-divisible-by", type=int, default=128, help="make_vocab_size_divisible_by")
    to_mc.add_argument("--verify", action="store_true", help="compare logits and print a JSON report")
    to_mc.set_defaults(func=_hf_to_mcore)

    to_hf = sub.add_parser("mcore-to-hf", help="Megatron checkpoint -> HF model directory")
    to_hf.add_argument("--ckpt", required=True, help="checkpoint directory written by hf-to-mcore")
    to_hf.add_argument("--out", required=True, help="HF directory to write")
    to_hf.add_argument("--hf-config", default=None, help="HF directory or name whose config.json to use")
    to_hf.add_argument("--verify", action="store_true", help="compare logits and print a JSON report")
    to_hf.set_defaults(func=_mcore_to_hf)


def _hf_to_mcore(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..models import pipeline
    from ..models.registry import resolve_model

    if args.tp < 1:
        raise ConfigError("--tp", f"must be >= 1, got {args.tp}")
    hf_dir = resolve_model(args.hf)
    meta = pipeline.hf_to_mcore(
        hf_dir, args.out, tp=args.tp, spec=args.spec, divisible_by=args.vocab_divisible_by
    )
    print(f"wrote {meta.layout.tp} TP shard(s) of {args.hf} to {args.out}", file=sys.stderr)
    if args.verify:
        report = pipeline.verify_hf_to_mcore(hf_dir, args.out)
        print(pipeline.format_report({"direction": "hf-to-mcore", **report}))
    return 0


def _mcore_to_hf(args: argparse.Namespace) -> int:
    from ..models import pipeline
    from ..models.registry import resolve_model
    from ..models.verify import hf_config_dict

    hf_config = hf_config_dict(resolve_model(args.hf_config)) if args.hf_config else None
    pipeline.mcore_to_hf(args.ckpt, args.out, hf_config)
    print(f"wrote Hugging Face model to {args.out}", file=sys.stderr)
    if args.verify:
        report = pipeline.verify_mcore_to_hf(args.ckpt, args.out)
        print(pipeline.format_report({"direction": "mcore-to-hf", **report}))
    return 0
