"""`mtr demo [--out DIR] [--profile NAME]`: the embedded default (SmolLM2-135M-Instruct, CPU) end to end."""

from __future__ import annotations

import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("demo", help="synth -> SFT -> GRPO -> eval with the embedded default model")
    p.add_argument("--out", default="runs/demo", help="run directory (default: runs/demo)")
    p.add_argument("--config", default=None, help="multi-stage config (default: configs/demo.yaml)")
    p.add_argument(
        "--profile",
        default="quick",
        help="quick (default) or a profile of the config: full (a longer GRPO), retrieval (the same GRPO against the real engine), llm-tools; each shares synth and SFT",
    )
    p.add_argument("overrides", nargs="*", metavar="stage.key=value", help="e.g. sft.train.steps=20")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..demo import results_table, run_demo

    config = args.config or _default_config()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    summary = run_demo(config, args.out, list(args.overrides), log, profile=args.profile)
    times = ", ".join(f"{k} {v:.0f}s" for k, v in summary["timings_s"].items())
    print(f"\nStage times: {times}")
    trend = summary["grpo_reward"]
    if trend:
        print(
            f"GRPO mean reward over {trend['steps']} steps: first third {trend['first_third']:.3f}, "
            f"last third {trend['last_third']:.3f}"
        )
    print(f"Report: {summary['report']}")
    table = results_table(Path(summary["results"]))
    if table:
        print(table)
    return 0


def _default_config() -> str:
    from ..errors import MtrError

    path = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
    if not path.is_file():
        raise MtrError("configs/demo.yaml not found next to the package; pass --config")
    return str(path)
