"""Fraction of real (non-pad) tokens per row: first-fit-decreasing packing vs one trace per padded row.

Synthesizes grounded traces from the shipped samples of all four benchmarks (or reads a traces file),
renders them with the SmolLM2 tokenizer, and packs them at several sequence lengths.

    python tools/bench_packing.py [--traces FILE.jsonl] [--seq-len 1024 2048 4096]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mtr_hpc.data import load_benchmark, load_sample
from mtr_hpc.models.registry import load_tokenizer
from mtr_hpc.synth import SynthAgents, SynthConfig, synthesize_example
from mtr_hpc.trace.io import read_traces
from mtr_hpc.trace.render import ChatRenderer
from mtr_hpc.train.packing import pack
from mtr_hpc.train.sft_data import render_segments

SHARED_FILES = {
    "hotpotqa": "hotpotqa/hotpot_dev_distractor_first100.json",
    "musique": "musique/musique_ans_v1.0_dev_noparagraphs.json",
    "2wiki": "2wikimultihopqa/2wiki_dev_4000subset_evidences.json",
    "bamboogle": "bamboogle/bamboogle_with_decomp.json",
}


def synthesized_traces(data_dir: str | None, limit: int | None):
    traces = []
    for bench in ("hotpotqa", "musique", "2wiki", "bamboogle"):
        cfg = SynthConfig()
        agents = SynthAgents.build(cfg)
        if data_dir:
            examples = load_benchmark(bench, Path(data_dir) / SHARED_FILES[bench], limit=limit).examples
        else:
            examples = load_sample(bench)
        for ex in examples:
            trace, verdict = synthesize_example(ex, cfg, agents)
            if verdict.keep:
                traces.append(trace)
    return traces


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--traces", help="a traces JSONL file (default: synthesize from the shipped samples)")
    ap.add_argument("--data", help="synthesize from the benchmark files in this dir (e.g. ../shared/data)")
    ap.add_argument("--limit", type=int, default=1000, help="examples per benchmark with --data")
    ap.add_argument("--seq-len", type=int, nargs="+", default=[1024, 2048, 4096])
    args = ap.parse_args()
    traces = read_traces(args.traces)[0] if args.traces else synthesized_traces(args.data, args.limit)
    renderer = ChatRenderer(load_tokenizer("smollm2-135m"))
    t0 = time.perf_counter()
    segments = render_segments(traces, renderer)
    lengths = sorted(len(s) for s in segments)
    print(
        f"{len(traces)} traces, rendered in {time.perf_counter() - t0:.2f}s; tokens per trace: "
        f"min {lengths[0]}, median {lengths[len(lengths) // 2]}, max {lengths[-1]}"
    )
    print(
        f"{'seq_len':>8} {'rows packed':>12} {'rows padded':>12} {'real% packed':>13} {'real% padded':>13} {'trunc':>6}"
    )
    for seq_len in args.seq_len:
        t0 = time.perf_counter()
        rows, stats = pack(segments, seq_len)
        dt = time.perf_counter() - t0
        print(
            f"{seq_len:>8} {stats.rows:>12} {stats.sequences:>12} {100 * stats.packed_fraction:>12.2f}% "
            f"{100 * stats.padded_fraction:>12.2f}% {stats.truncated:>6}   (packed in {dt * 1000:.1f} ms)"
        )


if __name__ == "__main__":
    main()
