"""SFT on CPU: packing is exact, resume is exact, the HF export loads and matches, bad input is clear."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _paths import REPO
from _traces import hotpot_traces

from mtr_hpc.config import load_config
from mtr_hpc.errors import ConfigError, MtrError
from mtr_hpc.trace.io import write_traces
from mtr_hpc.tracking import read_metrics
from mtr_hpc.train.sft_config import SFTConfig


@pytest.fixture(scope="module")
def trace_file(shared_data, tmp_path_factory):
    path = tmp_path_factory.mktemp("traces") / "traces.jsonl"
    write_traces(path, hotpot_traces(shared_data, 24))
    return path


def _cfg(out: Path, traces: Path, *extra: str) -> SFTConfig:
    return load_config(
        SFTConfig,
        REPO / "configs" / "sft-tiny.yaml",
        [
            f"out={out}",
            f"data.traces=[{traces}]",
            "data.seq_len=512",
            "model.hf=" + str(REPO / "configs/models/tiny-llama"),
            *extra,
        ],
    )


def _losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["sft/loss"]) for r in read_metrics(run)]


@pytest.mark.slow
def test_killed_and_resumed_run_matches_uninterrupted(tmp_path, trace_file):
    from mtr_hpc.train.sft import run_sft

    full = run_sft(_cfg(tmp_path / "a", trace_file, "train.steps=4", "export_hf=false"))
    assert full["steps"] == 4
    # The second run stops after step 2 (its checkpoint), then a new process resumes it to step 4.
    run_sft(_cfg(tmp_path / "b", trace_file, "train.steps=2", "export_hf=false"))
    ckpts = sorted(p.name for p in (tmp_path / "b" / "checkpoints").glob("step_*"))
    assert ckpts == ["step_000002"]
    run_sft(_cfg(tmp_path / "b", trace_file, "train.steps=4", "export_hf=false"))
    a, b = _losses(tmp_path / "a"), _losses(tmp_path / "b")
    assert [s for s, _ in b] == [0, 1, 2, 3]
    assert a == b  # bitwise: same batches, same RNG, same optimizer state
    assert a[-1][1] < a[0][1]


def sequence_losses(per_token, mask, segment_ids) -> dict:
    """Masked mean loss of each packed segment: {(row, segment): loss}."""
    out = {}
    for row in range(per_token.shape[0]):
        for seg in segment_ids[row].unique().tolist():
            sel = (segment_ids[row] == seg) & (mask[row] > 0)
            if seg >= 0 and sel.any():
                out[(row, seg)] = per_token[row][sel].float().mean()
    return out


def test_packed_rows_give_the_loss_of_each_sequence_alone():
    from mtr_hpc.models.config import ModelConfig, arch_from_hf
    from mtr_hpc.models.gpt import build_gpt
    from mtr_hpc.models.parallel import init_parallel
    from mtr_hpc.train.batches import model_batch
    from mtr_hpc.train.packing import make_segment, pack

    init_parallel(1, 1, seed=7)
    arch = arch_from_hf(json.loads((REPO / "configs/models/tiny-llama/config.json").read_text()))
    model = build_gpt(arch, ModelConfig(hf="x", seq_length=64)).eval()
    g = torch.Generator().manual_seed(0)
    segs = []
    for i, n in enumerate([9, 14, 6, 20]):
        ids = torch.randint(3, 1000, (n,), generator=g).tolist()
        mask = [0] * 3 + [1] * (n - 3)
        segs.append(make_segment(ids, mask, source=i))
    rows, _ = pack(segs, seq_len=32)
    assert len(rows) < len(segs)  # really packed

    def per_token(batch):
        with torch.no_grad():
            return model(
                batch["tokens"], batch["position_ids"], batch["attention_mask"], labels=batch["labels"]
            )

    packed = model_batch(rows)
    packed_losses = sequence_losses(per_token(packed), packed["loss_mask"], packed["segment_ids"])
    for row_i, row in enumerate(rows):
        for k, src in enumerate(row.sources):
            alone_rows, _ = pack([segs[src]], seq_len=len(segs[src]))
            alone = model_batch(alone_rows)
            ref = sequence_losses(per_token(alone), alone["loss_mask"], alone["segment_ids"])[(0, 0)]
            torch.testing.assert_close(packed_losses[(row_i, k)], ref, atol=1e-5, rtol=1e-5)


def test_exported_hf_model_matches_megatron(tmp_path, trace_file):
    from transformers import AutoModelForCausalLM

    from mtr_hpc.models.gpt import forward_logits
    from mtr_hpc.train import model_io
    from mtr_hpc.train.sft import run_sft

    cfg = _cfg(tmp_path / "run", trace_file, "train.steps=1")
    summary = run_sft(cfg)
    hf_dir = Path(summary["hf_dir"])
    assert (hf_dir / "model.safetensors").exists() and (hf_dir / "tokenizer.json").exists()
    hf = AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    # Rebuild the Megatron model from the exported weights and compare logits.
    cfg.model.hf = str(hf_dir)
    src = model_io.policy_source(cfg.model)
    model = model_io.build_policy(cfg.model, src, "pretrained").eval()
    ids = torch.tensor([[1, 520, 9531, 198, 44, 17400, 46, 2]])
    with torch.no_grad():
        ref = hf(ids).logits
        got = forward_logits(model, ids, vocab_size=src.arch.vocab_size)
    assert (ref - got).abs().max().item() < 1e-4


def test_bad_input_is_reported(tmp_path, trace_file):
    from mtr_hpc.train.sft import run_sft

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(MtrError, match="no traces"):
        run_sft(_cfg(tmp_path / "e", empty))
    with pytest.raises(ConfigError, match="data.traces"):
        run_sft(_cfg(tmp_path / "m", tmp_path / "missing.jsonl"))
    with pytest.raises(MtrError, match="divisible|world size"):
        run_sft(_cfg(tmp_path / "tp", trace_file, "model.tp=2"))
    with pytest.raises(ConfigError, match="global_batch_rows|micro_batch_rows"):
        run_sft(_cfg(tmp_path / "mb", trace_file, "train.global_batch_rows=3", "train.micro_batch_rows=2"))


def test_checkpoint_of_another_shape_is_refused(tmp_path, trace_file):
    from mtr_hpc.train.sft import run_sft

    run_sft(_cfg(tmp_path / "r", trace_file, "train.steps=1", "export_hf=false"))
    other = tmp_path / "other"
    other.mkdir()
    cfg_json = json.loads((REPO / "configs/models/tiny-llama/config.json").read_text())
    cfg_json["intermediate_size"] = 256
    (other / "config.json").write_text(json.dumps(cfg_json))
    # Same run dir, other model: the stored config differs, so the run dir refuses it by name.
    with pytest.raises(MtrError, match="model.hf"):
        run_sft(_cfg(tmp_path / "r", trace_file, "train.steps=2", f"model.hf={other}"))


def test_loading_a_checkpoint_into_another_shape_names_the_tensor(tmp_path, trace_file):
    from mtr_hpc.models.config import ModelConfig
    from mtr_hpc.train.checkpoint import CheckpointError, latest_checkpoint
    from mtr_hpc.train.model_io import build_policy, policy_source
    from mtr_hpc.train.seams.cpu import CpuSeam
    from mtr_hpc.train.sft import run_sft

    run_sft(_cfg(tmp_path / "r", trace_file, "train.steps=1", "export_hf=false"))
    other = tmp_path / "wide"
    other.mkdir()
    cfg_json = json.loads((REPO / "configs/models/tiny-llama/config.json").read_text())
    cfg_json["intermediate_size"] = 256
    (other / "config.json").write_text(json.dumps(cfg_json))
    model_cfg = ModelConfig(hf=str(other), seq_length=512)
    model = build_policy(model_cfg, policy_source(model_cfg), "random")
    with pytest.raises(CheckpointError, match=r"linear_fc1.weight.*\(256, 64\).*\(512, 64\)"):
        CpuSeam().load(latest_checkpoint(tmp_path / "r" / "checkpoints"), model, None)
