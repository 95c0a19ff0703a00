"""Writing an eval run's outputs: results.json, report.md, PNG plots and the `eval/*` metrics.

Metrics are logged once, at step 0, as `eval/<model>/<setting>/<benchmark>/<metric>` (setting `direct` or
`tools/<env>`); the metrics file is
rewritten on every run (not appended), so a resumed run leaves one record describing all questions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import to_dict
from ..io import atomic_write_json, atomic_write_text
from ..tracking import MetricsLogger
from .config import EvalConfig
from .plots import plot_scores, plot_training_curves
from .report import render_report

METRIC_FIELDS = ("em", "f1", "format_valid_rate", "mean_turns", "mean_tool_calls", "invalid_call_rate")


def eval_metrics(results: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for c in results["cells"]:
        prefix = f"eval/{c['model']}/{c['setting']}/{c['benchmark']}"
        for key in METRIC_FIELDS:
            out[f"{prefix}/{key}"] = c[key]
        out[f"{prefix}/n"] = c["n"]
    return out


def write_outputs(run_dir: Path, cfg: EvalConfig, results: dict[str, Any]) -> list[Path]:
    plots = [plot_scores(results, run_dir / "scores.png")]
    if cfg.training_runs:
        curves = plot_training_curves(cfg.training_runs, run_dir / "training_curves.png")
        if curves is not None:
            plots.append(curves)
    paths = [run_dir / "results.json", run_dir / "report.md"]
    atomic_write_json(paths[0], results)
    atomic_write_text(paths[1], render_report(results, [p.name for p in plots]) + "\n")
    paths += plots
    metrics = eval_metrics(results)
    with MetricsLogger(run_dir, "eval", cfg.wandb, config=to_dict(cfg), resume_step=-1) as logger:
        logger.log(0, metrics)
        logger.summary(metrics)
    return paths
