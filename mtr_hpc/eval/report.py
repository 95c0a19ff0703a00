"""`results.json` and `report.md` of an eval run, computed from the prediction journal.

EM/F1 (overall and per question type) come from `mtr_hpc.metrics.score_predictions` over exactly the
evaluated questions, so a cell's numbers equal `mtr score` run on that cell's predictions against a
gold file of those questions. The other columns describe behaviour: format-valid rate (a final
`<answer>` the grammar accepts), mean turns, mean tool calls per question and the invalid-call rate
(calls the environment refused: unknown tool, bad arguments, over all calls made).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from ..data.example import QAExample
from ..metrics import score_example, score_predictions
from ..sim.fidelity import pool
from .stats import fmt_interval, paired_bootstrap


@dataclass
class CellResult:
    model: str
    setting: str  # `direct` or `tools/<env>` (`config.setting_label`)
    benchmark: str
    n: int
    em: float
    f1: float
    by_type: dict[str, dict[str, float]] = field(default_factory=dict)
    missing: int = 0
    answered: int = 0  # questions with a record that ran; the behaviour columns are means over these
    format_valid_rate: float = 0.0
    mean_turns: float = 0.0
    mean_tool_calls: float = 0.0
    invalid_call_rate: float = 0.0
    finish: dict[str, int] = field(default_factory=dict)
    # Questions not run because a probe of the setting found that the model's turns never parse
    # (`harness.run_setting`); they score 0 and the tables mark the cell.
    not_run: int = 0
    # Per question, in the order of the benchmark's examples (a missing record scores 0): the paired
    # intervals of the report resample these.
    em_per_question: list[float] = field(default_factory=list)
    # Pooled `sim.fidelity` counts of the tool episodes (empty in direct mode).
    fidelity: dict[str, float] = field(default_factory=dict)


def score_cell(
    model: str,
    setting: str,
    benchmark: str,
    examples: list[QAExample],
    records: list[dict[str, Any]],
    convention: str | None = None,
) -> CellResult:
    """One cell; `convention` is the scoring benchmark when `benchmark` is a label (default: itself)."""
    by_id = {str(r["id"]): r for r in records}
    done = [by_id[ex.id] for ex in examples if ex.id in by_id]
    report = score_predictions(
        examples, {i: str(r.get("prediction") or "") for i, r in by_id.items()}, convention or benchmark
    )
    not_run = sum(r.get("finish") == "not_run" for r in done)
    done = [r for r in done if r.get("finish") != "not_run"]  # the behaviour columns: episodes that ran
    k = max(len(done), 1)
    bench_of = convention or benchmark
    em_q = [
        score_example(bench_of, str(by_id[ex.id].get("prediction") or ""), ex.answers)[0]
        if ex.id in by_id
        else 0.0
        for ex in examples
    ]
    fid = [r["fidelity"] for r in done if isinstance(r.get("fidelity"), dict)]
    calls = sum(int(r.get("tool_calls", 0)) for r in done)
    invalid = sum(int(r.get("invalid_calls", 0)) for r in done)
    return CellResult(
        model=model,
        setting=setting,
        benchmark=benchmark,
        n=report.n,
        em=report.em,
        f1=report.f1,
        by_type=report.by_type,
        missing=report.missing,
        answered=len(done),
        format_valid_rate=sum(bool(r.get("format_valid")) for r in done) / k,
        mean_turns=sum(int(r.get("turns", 0)) for r in done) / k,
        mean_tool_calls=calls / k,
        invalid_call_rate=invalid / calls if calls else 0.0,
        finish=dict(sorted(Counter(str(r.get("finish")) for r in done).items())),
        not_run=not_run,
        em_per_question=em_q,
        fidelity=pool(fid) if fid else {},
    )


def build_results(
    models: list[str],
    settings: list[str],
    examples: dict[str, list[QAExample]],
    select,
    conventions: dict[str, str] | None = None,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The content of results.json; `select(model, setting, benchmark)` returns that cell's records and
    `conventions` maps a benchmark label to its scoring benchmark."""
    conventions = conventions or {}
    cells = [
        asdict(score_cell(m, setting, b, exs, select(m, setting, b), conventions.get(b)))
        for m in models
        for setting in settings
        for b, exs in examples.items()
    ]
    return {
        "models": list(models),
        "settings": list(settings),
        "benchmarks": list(examples),
        "n_questions": {b: len(exs) for b, exs in examples.items()},
        "conventions": {b: conventions.get(b, b) for b in examples},
        "cells": cells,
        "meta": meta or {},
    }


def find_cell(results: dict[str, Any], model: str, setting: str, benchmark: str) -> dict[str, Any]:
    for c in results["cells"]:
        if (c["model"], c["setting"], c["benchmark"]) == (model, setting, benchmark):
            return c
    raise KeyError((model, setting, benchmark))


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def em_f1_table(results: dict[str, Any]) -> list[str]:
    """The main table's lines: one row per model and setting, EM / F1 per benchmark."""
    cell = {(c["model"], c["setting"], c["benchmark"]): c for c in results["cells"]}
    benches = results["benchmarks"]
    header = ["model", "setting"] + [f"{b} EM / F1" for b in benches]
    rows = [
        [m, setting]
        + [
            f"{_pct(cell[m, setting, b]['em'])} / {_pct(cell[m, setting, b]['f1'])}"
            + (NOT_RUN_MARK if cell[m, setting, b].get("not_run") else "")
            for b in benches
        ]
        for m in results["models"]
        for setting in results["settings"]
    ]
    return _table(header, rows)


NOT_RUN_MARK = " †"


def not_run_note(results: dict[str, Any]) -> list[str]:
    """The footnote of the cells a probe cut short (`harness.run_setting`)."""
    cut = [c for c in results["cells"] if c.get("not_run")]
    if not cut:
        return []
    where = sorted({f"{c['model']} {c['setting']}" for c in cut})
    n = sum(c["not_run"] for c in cut)
    return [
        f"{NOT_RUN_MARK.strip()} No turn of the probe questions parsed ({', '.join(where)}): the other "
        f"{n} questions of those cells were not run and score 0 (`generation.probe: 0` runs them all).",
        "",
    ]


def _diff(
    cell: dict, a: tuple[str, str], b: tuple[str, str], benches: list[str]
) -> tuple[float, float, float]:
    """Paired bootstrap of EM(a) - EM(b) over `benches` (a, b: (model, setting))."""
    diffs = []
    for x in benches:
        qa, qb = cell[(*a, x)]["em_per_question"], cell[(*b, x)]["em_per_question"]
        if len(qa) != len(qb):
            return float("nan"), float("nan"), float("nan")
        diffs.append([u - v for u, v in zip(qa, qb, strict=True)])
    return paired_bootstrap(diffs)


def simulation_gap_table(results: dict[str, Any]) -> list[str]:
    """Each model's EM in every tool environment side by side, per benchmark and averaged over them,
    with each environment's difference from the reference and its paired bootstrap 95% interval: real
    retrieval when it was evaluated (the gap ZeroSearch's Table 4 measures), else the first
    environment. Empty with fewer than two."""
    envs = [s for s in results["settings"] if s.startswith("tools/")]
    if len(envs) < 2:
        return []
    ref = "tools/retrieval" if "tools/retrieval" in envs else envs[0]
    others = [e for e in envs if e != ref]
    cell = {(c["model"], c["setting"], c["benchmark"]): c for c in results["cells"]}
    header = (
        ["model", "benchmark"]
        + [f"{e[6:]} EM" for e in envs]
        + [f"{e[6:]} − {ref[6:]} [95% CI]" for e in others]
    )
    rows = []
    benches = results["benchmarks"]
    for m in results["models"]:
        em = {(e, b): 100 * cell[m, e, b]["em"] for e in envs for b in benches}
        for b in [*benches, "mean"]:
            at = {e: em[e, b] if b != "mean" else sum(em[e, x] for x in benches) / len(benches) for e in envs}
            scope = benches if b == "mean" else [b]
            rows.append(
                [m, f"**{b}**" if b == "mean" else b]
                + [f"{at[e]:.1f}" for e in envs]
                + [fmt_interval(*_diff(cell, (m, e), (m, ref), scope)) for e in others]
            )
    return _table(header, rows)


def model_comparison_table(results: dict[str, Any]) -> list[str]:
    """Every model against each model listed before it (a baseline first, then each training stage),
    per setting: the EM difference per benchmark and averaged over them, each with its paired bootstrap
    95% interval. Empty with one model."""
    models, benches = results["models"], results["benchmarks"]
    if len(models) < 2:
        return []
    cell = {(c["model"], c["setting"], c["benchmark"]): c for c in results["cells"]}
    header = ["models", "setting", *benches, "mean"]
    rows = []
    for j, m in enumerate(models):
        for base in models[:j]:
            for setting in results["settings"]:
                rows.append(
                    [f"{m} − {base}", setting]
                    + [fmt_interval(*_diff(cell, (m, setting), (base, setting), [b])) for b in benches]
                    + [fmt_interval(*_diff(cell, (m, setting), (base, setting), benches))]
                )
    return _table(header, rows)


def fidelity_table(results: dict[str, Any]) -> list[str]:
    """What each tool environment showed the policy, per model, setting and benchmark: observations that
    state the gold answer, episodes that saw it, empty observations, tokens per tool message, and the
    recall of the gold page of each hop."""
    rows = []
    for c in results["cells"]:
        f = c.get("fidelity") or {}
        if not f:
            continue

        recall = [f.get(f"recall_hop{h}") for h in (1, 2, 3)]

        rows.append(
            [
                c["model"],
                c["setting"],
                c["benchmark"],
                _pct(f["answer_present"]),
                _pct(f["answer_seen"]),
                _pct(f["empty"]),
                f"{f['obs_tokens']:.0f}",
                *("-" if v is None else _pct(v) for v in recall),
            ]
        )
    if not rows:
        return []
    header = [
        "model",
        "setting",
        "benchmark",
        "obs. with answer %",
        "episodes saw answer %",
        "empty obs. %",
        "tokens / tool msg",
        "gold page hop 1 %",
        "hop 2 %",
        "hop 3+ %",
    ]
    return _table(header, rows)


def coverage_note(results: dict[str, Any]) -> list[str]:
    """A line saying, per benchmark, how many questions the retrieval corpus holds the evidence pages
    of: where it holds none, a retrieval cell measures what the policy can do without them."""
    coverage = ((results.get("meta") or {}).get("retrieval_corpus") or {}).get("coverage")
    if not coverage:
        return []
    parts = [f"{b} {_pct(coverage[b])}%" for b in results["benchmarks"] if b in coverage]
    missing = [b for b in results["benchmarks"] if coverage.get(b, 1.0) < 0.5]
    line = (
        "**Retrieval corpus coverage** (questions whose evidence pages it holds): " + ", ".join(parts) + "."
    )
    if missing:
        line += f" Real retrieval cannot show {' or '.join(missing)} the pages that answer them."
    return [line, ""]


def render_report(results: dict[str, Any], images: list[str] | None = None) -> str:
    """Markdown: the main EM/F1 table, a behaviour table, one per-type table per benchmark, and links
    to `images` (file names relative to the report)."""
    models, settings, benches = results["models"], results["settings"], results["benchmarks"]
    cell = {(c["model"], c["setting"], c["benchmark"]): c for c in results["cells"]}
    out = ["# Evaluation report", ""]
    sizes = ", ".join(f"{b}: {n}" for b, n in results["n_questions"].items())
    out += [f"Questions per benchmark: {sizes}. EM / F1 in percent (0-100).", ""]
    for bench, runs in sorted(results.get("train_overlap", {}).items()):
        for run, n in sorted(runs.items()):
            out += [
                f"**Trained-on questions:** {n} of {results['n_questions'][bench]} {bench} questions were "
                f"in the training data of {run} (scored anyway: `allow_train_overlap`).",
                "",
            ]
    out += ["## EM / F1", ""] + em_f1_table(results) + [""] + not_run_note(results)
    gap = simulation_gap_table(results)
    if gap:
        out += ["## Simulation gap (EM by tool environment, and the difference in points)", ""] + gap + [""]
    out += coverage_note(results)
    versus = model_comparison_table(results)
    if versus:
        out += (
            [
                "## Models compared (EM difference in points, paired bootstrap 95% interval)",
                "",
            ]
            + versus
            + [""]
        )
    fidelity = fidelity_table(results)
    if fidelity:
        out += ["## Tool environment fidelity (what the policy observed)", ""] + fidelity + [""]
    out += ["## Behaviour (all benchmarks pooled per row, over answered questions)", ""]
    header = ["model", "setting", "format valid %", "mean turns", "tool calls / q", "invalid calls %",
              "ended repeating a call %", "not run"]  # fmt: skip
    rows = []
    for m in models:
        for setting in settings:
            cs = [cell[m, setting, b] for b in benches]
            n = sum(c["answered"] for c in cs) or 1
            calls = sum(c["mean_tool_calls"] * c["answered"] for c in cs)
            invalid = sum(c["invalid_call_rate"] * c["mean_tool_calls"] * c["answered"] for c in cs)
            repeated = sum(c["finish"].get("repeated_call", 0) for c in cs)
            rows.append(
                [
                    m,
                    setting,
                    _pct(sum(c["format_valid_rate"] * c["answered"] for c in cs) / n),
                    f"{sum(c['mean_turns'] * c['answered'] for c in cs) / n:.2f}",
                    f"{calls / n:.2f}",
                    _pct(invalid / calls) if calls else "-",
                    _pct(repeated / n) if setting != "direct" else "-",
                    str(sum(c.get("not_run", 0) for c in cs)),
                ]
            )
    out += _table(header, rows) + [""]
    for b in benches:
        types = sorted({t for m in models for setting in settings for t in cell[m, setting, b]["by_type"]})
        if not types:
            continue
        out += [f"## {b} by question type", ""]
        header = ["model", "setting"] + [f"{t} EM / F1" for t in types]
        rows = []
        for m in models:
            for setting in settings:
                bt = cell[m, setting, b]["by_type"]
                rows.append(
                    [m, setting]
                    + [
                        f"{_pct(bt[t]['em'])} / {_pct(bt[t]['f1'])} (n={bt[t]['n']})" if t in bt else "-"
                        for t in types
                    ]
                )
        out += _table(header, rows) + [""]
    if images:
        out += ["## Plots", ""] + [f"![{name}]({name})" for name in images] + [""]
    return "\n".join(out)
