"""Distributed SFT on CPU: 2 gloo ranks (TP=2, or DP=2) reproduce the single-rank losses."""

from __future__ import annotations

import pytest
from _dist import run_distributed
from _paths import REPO
from _traces import hotpot_traces

from mtr_hpc.trace.io import write_traces
from mtr_hpc.tracking import read_metrics

# Multi-second tests (real clusters, several ranks or real models): out of `-m "not slow"`.
pytestmark = pytest.mark.slow


def _train(rank: int, world: int, out: str, traces: str, extra: list[str]) -> list[float]:
    from mtr_hpc.config import load_config
    from mtr_hpc.train.sft import run_sft
    from mtr_hpc.train.sft_config import SFTConfig

    cfg = load_config(
        SFTConfig,
        REPO / "configs" / "sft-tiny.yaml",
        [
            f"out={out}",
            f"data.traces=[{traces}]",
            "data.seq_len=512",
            f"model.hf={REPO / 'configs/models/tiny-llama'}",
            "train.steps=3",
            "export_hf=false",
            *extra,
        ],
    )
    run_sft(cfg)
    return [r["sft/loss"] for r in read_metrics(out)]


@pytest.fixture(scope="module")
def trace_file(shared_data, tmp_path_factory):
    path = tmp_path_factory.mktemp("dist") / "traces.jsonl"
    write_traces(path, hotpot_traces(shared_data, 16, seed=3))
    return str(path)


@pytest.fixture(scope="module")
def reference(trace_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    return run_distributed(_train, 1, str(out), trace_file, [], timeout=300)[0]


def test_tensor_parallel_matches_single_rank(trace_file, reference, tmp_path):
    losses = run_distributed(_train, 2, str(tmp_path / "tp2"), trace_file, ["model.tp=2"], timeout=300)
    assert losses[0] == pytest.approx(reference, abs=1e-4)


def test_data_parallel_matches_single_rank(trace_file, reference, tmp_path):
    losses = run_distributed(_train, 2, str(tmp_path / "dp2"), trace_file, [], timeout=300)
    assert losses[0] == pytest.approx(reference, abs=1e-4)
