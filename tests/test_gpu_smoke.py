"""tools/gpu_smoke.py stays runnable: its `--cpu` mode runs checks 1-4 with the CPU seam on both legs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Multi-second tests (real clusters, several ranks or real models): out of `-m "not slow"`.
pytestmark = pytest.mark.slow


def test_gpu_smoke_cpu_mode_passes_and_writes_its_json(repo_root, tmp_path):
    out = tmp_path / "smoke.json"
    res = subprocess.run(
        [sys.executable, "tools/gpu_smoke.py", "--cpu", "--out", str(out)],
        cwd=repo_root, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:] + res.stdout[-3000:]
    printed = json.loads(res.stdout.strip().splitlines()[-1])
    assert json.loads(out.read_text()) == printed
    assert printed["ok"] and printed["mode"] == "cpu"
    checks = printed["checks"]
    assert sorted(checks) == ["bf16", "dist_checkpoint", "grpo", "seam_parity"]
    assert all(c["ok"] for c in checks.values()), checks
    # Same seam on both legs: the comparisons are exact, which is what makes them checks of the harness.
    assert checks["seam_parity"]["sft_loss_rel_diff"] == 0.0
    assert checks["dist_checkpoint"]["identical"] and checks["dist_checkpoint"]["resumed_step"] == 2
    losses = checks["bf16"]["losses"]
    assert losses[-1] < losses[0]
    assert len(checks["grpo"]["steps"]) == 2


def test_gpu_smoke_without_prepared_wheels_says_how_to_prepare(repo_root, tmp_path):
    import shutil

    copy = tmp_path / "repo"
    (copy / "tools").mkdir(parents=True)
    shutil.copy(repo_root / "tools" / "gpu_smoke.sh", copy / "tools")
    res = subprocess.run(["bash", "tools/gpu_smoke.sh"], cwd=copy, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "--prepare" in res.stderr
