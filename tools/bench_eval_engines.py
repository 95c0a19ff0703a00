"""One evaluation with each rollout engine: the same model, questions, settings and precision, scored
with the transformers engine and with vLLM, side by side.

Runs `mtr eval` twice from one config (`engine=hf`, then `engine=vllm`, each into its own run directory
under `--out`; a rerun resumes them), then prints per setting: each engine's mean EM over the benchmarks
and format-valid share, the paired bootstrap 95% interval of EM(vllm) - EM(hf) over the same questions,
the share of questions whose predictions are the same, and each engine's seconds.

    .venv/bin/python tools/bench_eval_engines.py --config RUN/eval/config.yaml --out DIR \\
        "models=[{name: sft, path: RUN/sft}]" [key=value ...] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ENGINES = ("hf", "vllm")


def run(config: str, out: Path, overrides: list[str]) -> dict:
    from mtr_hpc.config import load_config
    from mtr_hpc.eval.config import EvalConfig
    from mtr_hpc.eval.harness import run_eval

    runs = {}
    for engine in ENGINES:
        cfg = load_config(EvalConfig, config, [*overrides, f"out={out / engine}", f"engine={engine}"])
        summary = run_eval(cfg)
        runs[engine] = {
            "results": json.loads((Path(summary["out"]) / "results.json").read_text(encoding="utf-8")),
            "predictions": _predictions(Path(summary["out"])),
            "timing_s": summary["timing_s"],
        }
    return compare(runs)


def _predictions(run_dir: Path) -> dict[tuple, str]:
    out = {}
    for line in (run_dir / "predictions.jsonl").read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        setting = r["mode"] if r["mode"] == "direct" else f"{r['mode']}/{r['env']}"
        out[(r["model"], setting, r["benchmark"], str(r["id"]))] = str(r.get("prediction") or "")
    return out


def compare(runs: dict) -> dict:
    from mtr_hpc.eval.stats import paired_bootstrap

    cells = {
        e: {(c["model"], c["setting"], c["benchmark"]): c for c in runs[e]["results"]["cells"]}
        for e in ENGINES
    }
    rows = []
    for model, setting in sorted({k[:2] for k in cells["hf"]}):
        benches = sorted(k[2] for k in cells["hf"] if k[:2] == (model, setting))
        pair = [[cells[e][(model, setting, b)] for b in benches] for e in ENGINES]
        diffs = [
            [v - h for h, v in zip(ch["em_per_question"], cv["em_per_question"], strict=True)]
            for ch, cv in zip(*pair, strict=True)
        ]
        keys = [k for k in runs["hf"]["predictions"] if k[:2] == (model, setting)]
        same = sum(runs["hf"]["predictions"][k] == runs["vllm"]["predictions"].get(k) for k in keys)
        row = {"model": model, "setting": setting, "questions": sum(len(d) for d in diffs)}
        for e, cs in zip(ENGINES, pair, strict=True):
            row[e] = {
                "em": 100 * sum(c["em"] for c in cs) / len(cs),
                "format_valid": 100 * sum(c["format_valid_rate"] for c in cs) / len(cs),
                "seconds": runs[e]["timing_s"].get(model, {}).get(setting, {}).get("seconds"),
            }
        mean, low, high = paired_bootstrap(diffs)
        row["em_vllm_minus_hf"] = [100 * mean, 100 * low, 100 * high]
        row["same_predictions"] = same / max(len(keys), 1)
        rows.append(row)
    return {"rows": rows}


def report(result: dict) -> None:
    print(f"{'model':<10} {'setting':<18} {'n':>4}  {'EM hf':>6} {'EM vllm':>7}  {'valid hf':>8} {'valid vllm':>10}  "
          f"{'vllm - hf [95%]':<22} {'same':>5}  {'s hf':>6} {'s vllm':>6}")  # fmt: skip
    for r in result["rows"]:
        d = r["em_vllm_minus_hf"]
        h, v = r["hf"], r["vllm"]
        print(
            f"{r['model']:<10} {r['setting']:<18} {r['questions']:>4}  {h['em']:6.1f} {v['em']:7.1f}  "
            f"{h['format_valid']:7.1f}% {v['format_valid']:9.1f}%  {d[0]:+5.1f} [{d[1]:+5.1f}, {d[2]:+5.1f}]"
            f"{'':<4} {r['same_predictions']:5.0%}  {h['seconds'] or 0:6.0f} {v['seconds'] or 0:6.0f}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    result = run(args.config, args.out, args.overrides)
    print(json.dumps(result)) if args.json else report(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
