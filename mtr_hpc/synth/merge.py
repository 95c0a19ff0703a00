"""`mtr synth merge`: one deduplicated dataset and one manifest from the finished shards of a run.

The shard files stay where they are (`traces/shard-*.jsonl` is what `mtr sft` reads from a run
directory); merging writes single-file copies beside them, outside `traces/` so that a reader globbing
`DIR/traces/*.jsonl` never sees a trace twice:

    merged/traces.jsonl        kept traces of every shard, deduplicated by trace id, sorted by trace id
    merged/rejects.jsonl       rejected traces with their reasons, the same way
    merged/tool_library.jsonl  the shards' tool libraries merged (usage counts summed)
    manifest.json              counts kept / rejected by reason and benchmark, the tool frequency
                               distribution, per-shard timings, versions

`summarize` is also what a shard's own manifest counts with.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import DataError, MtrError
from ..io import atomic_write, iter_jsonl, read_json
from ..rundir import write_manifest
from ..sim.tool_library import ToolLibrary


class MergeError(MtrError):
    """The run directory holds no shards, unfinished shards, or shards of different runs."""


def summarize(outcomes: Iterable[tuple[str, bool, str]]) -> dict[str, Any]:
    """Counts over (benchmark, kept, reason) triples: totals, rejects by reason, both per benchmark."""
    kept, by_reason = 0, Counter()
    per: dict[str, dict[str, Any]] = {}
    for benchmark, keep, reason in outcomes:
        row = per.setdefault(benchmark, {"kept": 0, "rejected": 0, "rejected_by_reason": Counter()})
        if keep:
            kept += 1
            row["kept"] += 1
        else:
            by_reason[reason] += 1
            row["rejected"] += 1
            row["rejected_by_reason"][reason] += 1
    rejected = sum(by_reason.values())
    for row in per.values():
        row["rejected_by_reason"] = dict(sorted(row["rejected_by_reason"].items()))
    return {
        "examples": kept + rejected,
        "kept": kept,
        "rejected": rejected,
        "rejected_by_reason": dict(sorted(by_reason.items())),
        "by_benchmark": dict(sorted(per.items())),
    }


def dumps_line(obj: Any) -> str:
    """The one serialization of a JSONL record used by shard and merged files (so lines compare as bytes)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"


def _shard_manifests(run_dir: Path) -> list[dict[str, Any]]:
    paths = sorted((run_dir / "shards").glob("shard-*.manifest.json"))
    if not paths:
        raise MergeError(
            f"{run_dir} holds no finished shard (no shards/shard-*.manifest.json); run mtr synth"
        )
    manifests = [read_json(p) for p in paths]
    counts = {m.get("num_shards") for m in manifests}
    if len(counts) != 1:
        raise MergeError(f"{run_dir} holds shards of different shard counts {sorted(map(str, counts))}")
    n = counts.pop()
    missing = sorted(set(range(n)) - {m.get("shard_index") for m in manifests})
    if missing:
        shown = ", ".join(map(str, missing[:10]))
        raise MergeError(
            f"{run_dir}: {len(missing)} of {n} shards are not finished (shard {shown}); rerun them"
        )
    return sorted(manifests, key=lambda m: m["shard_index"])


def _read_unique(paths: list[Path], id_of) -> tuple[list[tuple[str, str]], int]:
    """(id, line) pairs over `paths`, first occurrence of each id kept; and how many duplicates were dropped."""
    seen: dict[str, str] = {}
    dups = 0
    for path in paths:
        for lineno, obj in iter_jsonl(path):
            ident = id_of(obj)
            if not isinstance(ident, str):
                raise DataError(path, f"line {lineno}", "id", "record without a string id")
            if ident in seen:
                dups += 1
                continue
            seen[ident] = dumps_line(obj)
    return sorted(seen.items()), dups


def _write_lines(path: Path, lines: Iterable[str]) -> None:
    with atomic_write(path) as fh:
        fh.writelines(lines)


def _fidelity(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The shards' observation statistics per benchmark, combined (`sim.fidelity.combine`)."""
    from ..sim.fidelity import combine

    benches = sorted({b for m in manifests for b in m.get("fidelity") or {}})
    return {b: combine([(m.get("fidelity") or {}).get(b, {}) for m in manifests]) for b in benches}


def merge_run(run_dir: str | Path) -> dict[str, Any]:
    """Merge every shard of `run_dir`; returns the manifest written to `run_dir/manifest.json`."""
    run = Path(run_dir)
    if not run.is_dir():
        raise MergeError(f"run directory {run} does not exist")
    manifests = _shard_manifests(run)
    names = [m["shard"] for m in manifests]
    traces, dup_traces = _read_unique([run / "traces" / f"{n}.jsonl" for n in names], lambda o: o.get("id"))
    rejects, dup_rejects = _read_unique(
        [run / "rejects" / f"{n}.jsonl" for n in names], lambda o: (o.get("trace") or {}).get("id")
    )
    # A trace id kept by one shard wins over the same id rejected by another (only possible across reruns).
    kept_ids = {ident for ident, _ in traces}
    rejects = [(i, line) for i, line in rejects if i not in kept_ids]
    _write_lines(run / "merged" / "traces.jsonl", (line for _, line in traces))
    _write_lines(run / "merged" / "rejects.jsonl", (line for _, line in rejects))
    library = ToolLibrary()
    for n in names:
        library.merge(ToolLibrary.load_or_new(run / "tool_library" / f"{n}.jsonl"))
    library.save(run / "merged" / "tool_library.jsonl")

    outcomes = [(json.loads(line)["benchmark"], True, "ok") for _, line in traces]
    outcomes += [(r["benchmark"], False, r["reason"]) for r in (json.loads(line) for _, line in rejects)]
    fields = summarize(outcomes)
    fields.update(
        num_shards=len(manifests),
        duplicates_dropped={"traces": dup_traces, "rejects": dup_rejects},
        tools=library.report(),
        fidelity=_fidelity(manifests),
        timings={
            "synth_s": round(sum(m["timings"]["synth_s"] for m in manifests), 3),
            "max_shard_wall_s": max(m["timings"]["wall_s"] for m in manifests),
            "shards": {m["shard"]: m["timings"] for m in manifests},
        },
        files={"traces": "merged/traces.jsonl", "rejects": "merged/rejects.jsonl", "shards": "traces/"},
        config=manifests[0].get("config"),
    )
    write_manifest(run, "synth", **fields)
    return read_json(run / "manifest.json")
