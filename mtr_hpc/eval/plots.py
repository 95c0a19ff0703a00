"""PNG plots of an eval run (matplotlib, Agg backend: no display needed).

- `scores.png`: one panel per benchmark, EM and F1 bars for every (model, setting).
- `training_curves.png`: the curves of the given SFT / GRPO run directories (their metrics.jsonl),
  one panel per metric that any of them logged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..io import atomic_write
from ..tracking import read_metrics

CURVE_KEYS = ("sft/loss", "sft/eval_loss", "grpo/response_length", "grpo/kl")
CURVE_PREFIXES = ("grpo/reward/",)  # every reward component the GRPO run logged


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100, bbox_inches="tight")
    return path


def plot_scores(results: dict[str, Any], path: str | Path) -> Path:
    plt = _pyplot()
    benches = results["benchmarks"]
    pairs = [(m, setting) for m in results["models"] for setting in results["settings"]]
    cell = {(c["model"], c["setting"], c["benchmark"]): c for c in results["cells"]}
    fig, axes = plt.subplots(
        1, len(benches), figsize=(max(4.0, 1.2 * len(pairs)) * len(benches), 4), squeeze=False
    )
    width = 0.4
    for ax, b in zip(axes[0], benches, strict=True):
        xs = list(range(len(pairs)))
        em = [100 * cell[m, setting, b]["em"] for m, setting in pairs]
        f1 = [100 * cell[m, setting, b]["f1"] for m, setting in pairs]
        ax.bar([x - width / 2 for x in xs], em, width, label="EM")
        ax.bar([x + width / 2 for x in xs], f1, width, label="F1")
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{m}\n{setting}" for m, setting in pairs], fontsize=8)
        ax.set_ylim(0, 100)
        ax.set_title(f"{b} (n={results['n_questions'][b]})")
        ax.set_ylabel("score (%)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        return _save(fig, Path(path))
    finally:
        plt.close(fig)


def curve_keys(runs) -> list[str]:
    """The metrics to plot, in `CURVE_KEYS` order then the reward components sorted by name."""
    logged = {k for recs in runs for rec in recs for k in rec}
    fixed = [k for k in CURVE_KEYS if k in logged]
    return fixed + sorted(k for k in logged if k.startswith(CURVE_PREFIXES))


def plot_training_curves(run_dirs: list[str | Path], path: str | Path) -> Path | None:
    """None when no run logged any curve metric (nothing to draw)."""
    runs = {str(d): read_metrics(d) for d in run_dirs}
    keys = curve_keys(runs.values())
    if not keys:
        return None
    plt = _pyplot()
    cols = min(3, len(keys))
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        for run, recs in runs.items():
            pts = [(r["step"], r[key]) for r in recs if isinstance(r.get(key), int | float) and "step" in r]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="." if len(pts) < 30 else None, label=Path(run).name)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    fig.tight_layout()
    try:
        return _save(fig, Path(path))
    finally:
        plt.close(fig)
