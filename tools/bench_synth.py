"""Throughput of grounded trace synthesis on one core, over the four shipped benchmark samples.

Runs the whole one-example pipeline (ToolMaker, AutoAgent <-> ToolActor, validation and filtering) and,
separately, generation alone (`--no-filter`), after one warm-up pass that compiles the schema validators.
Prints one JSON object: traces per second per benchmark and overall.

    python tools/bench_synth.py [--repeat 3] [--no-filter]
"""

from __future__ import annotations

import argparse
import json
import time

from mtr_hpc.data import load_sample
from mtr_hpc.sim.drive import drive
from mtr_hpc.synth import DistractorPool, SynthAgents, SynthConfig, build_kb
from mtr_hpc.synth.filtering import synthesize_example

BENCHMARKS = ("hotpotqa", "musique", "2wiki", "bamboogle")


def _generate_only(agents: SynthAgents, ex, seed: int) -> None:
    kb = build_kb(ex)
    toolset = agents.toolmaker.make(ex, kb)
    ep = agents.actor.episode(ex, kb, toolset, seed)
    drive(agents.agent.arun(ep, ex.id))


def bench(repeat: int, with_filter: bool) -> dict:
    out: dict = {
        "mode": "pipeline+filter" if with_filter else "generation",
        "repeat": repeat,
        "benchmarks": {},
    }
    total_n, total_s = 0, 0.0
    for name in BENCHMARKS:
        examples = load_sample(name)
        cfg = SynthConfig(benchmark=name)
        agents = SynthAgents.build(cfg, pool=DistractorPool.from_kbs([build_kb(e) for e in examples]))
        for ex in examples:  # warm-up: validators compiled, library filled
            synthesize_example(ex, cfg, agents)
        kept = 0
        t0 = time.perf_counter()
        for r in range(repeat):
            cfg.seed = r + 1
            for ex in examples:
                if with_filter:
                    kept += synthesize_example(ex, cfg, agents)[1].keep
                else:
                    _generate_only(agents, ex, cfg.seed)
        dt = time.perf_counter() - t0
        n = repeat * len(examples)
        total_n, total_s = total_n + n, total_s + dt
        row = {"traces": n, "seconds": round(dt, 3), "traces_per_s": round(n / dt, 1)}
        if with_filter:
            row["kept_fraction"] = round(kept / n, 3)
        out["benchmarks"][name] = row
    out["overall_traces_per_s"] = round(total_n / total_s, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-filter", action="store_true", help="time generation only (no validation/scoring)")
    args = ap.parse_args()
    print(json.dumps(bench(args.repeat, not args.no_filter), indent=2))


if __name__ == "__main__":
    main()
