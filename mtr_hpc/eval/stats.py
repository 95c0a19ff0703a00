"""Paired bootstrap intervals for EM differences over the same questions.

Two cells scored on the same questions (two models in one setting, or one model in two environments)
differ question by question; resampling the questions (within each benchmark, so each keeps its size)
gives the spread of the mean difference. A mean over several benchmarks is the mean of their means, as
the tables report it, and is resampled the same way.
"""

from __future__ import annotations

import numpy as np


def paired_bootstrap(
    diffs: list[list[float]], n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """(mean, low, high) of the mean over benchmarks of the mean per-question difference; `diffs` holds
    one list of per-question differences (a - b) per benchmark. Percentile interval at `level`."""
    groups = [np.asarray(d, dtype=np.float64) for d in diffs if len(d)]
    if not groups:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    point = float(np.mean([g.mean() for g in groups]))
    boots = np.zeros(n_boot)
    for g in groups:
        idx = rng.integers(0, len(g), size=(n_boot, len(g)))
        boots += g[idx].mean(axis=1)
    boots /= len(groups)
    alpha = (1 - level) / 2
    return point, float(np.quantile(boots, alpha)), float(np.quantile(boots, 1 - alpha))


def fmt_interval(mean: float, low: float, high: float, scale: float = 100.0) -> str:
    """`+5.2 [-1.0, +11.3]` in points."""
    if mean != mean:  # nan
        return "-"
    return f"{scale * mean:+.1f} [{scale * low:+.1f}, {scale * high:+.1f}]"
