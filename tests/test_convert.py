"""HF <-> Megatron conversion at TP=1 on CPU, fp32: logits agree, round trips are exact, CLI --verify."""

from __future__ import annotations

import json

import pytest
import torch

from mtr_hpc.cli import main as mtr_main
from mtr_hpc.errors import MtrError
from mtr_hpc.models.config import arch_from_hf
from mtr_hpc.models.convert import Layout, hf_to_megatron, megatron_to_hf, rename_for_spec
from mtr_hpc.models.tiny import save_tiny_hf_model, tiny_hf_model
from mtr_hpc.models.verify import compare_logits, hf_logits, megatron_logits, states_equal


def _check_logits(hf_model, ids):
    arch = arch_from_hf(hf_model.config)
    layout = Layout(arch)
    mc = megatron_logits(arch, layout, hf_to_megatron(hf_model.state_dict(), layout), ids)
    report = compare_logits(hf_logits(hf_model, ids), mc)
    assert report["max_abs_logit_diff"] <= 1e-3, report
    assert report["argmax_all_agree"], report
    return report


@pytest.mark.parametrize("tied", [True, False])
def test_tiny_qwen2_logits_match(tied):
    model = tiny_hf_model(model_type="qwen2", tied=tied)
    assert model.model.layers[0].self_attn.q_proj.bias is not None
    _check_logits(model, torch.randint(0, 200, (2, 11), generator=torch.Generator().manual_seed(1)))


@pytest.mark.parametrize("model_type,tied", [("qwen2", True), ("qwen2", False), ("llama", True)])
@pytest.mark.parametrize("te_names", [False, True])
def test_roundtrip_is_exact(model_type, tied, te_names):
    state = tiny_hf_model(model_type=model_type, tied=tied).state_dict()
    layout = Layout(arch_from_hf(tiny_hf_model(model_type=model_type, tied=tied).config), te_names=te_names)
    mc = hf_to_megatron(state, layout)
    if te_names:
        assert "decoder.layers.1.self_attention.linear_qkv.layer_norm_weight" in mc
        assert "decoder.layers.1.mlp.linear_fc1.layer_norm_weight" in mc
        assert set(rename_for_spec(mc, layout.arch, te_names=False)) == set(
            hf_to_megatron(state, Layout(layout.arch))
        )
    else:
        assert "decoder.layers.1.input_layernorm.weight" in mc
    back = megatron_to_hf([mc], layout)
    assert set(back) == set(state) - ({"lm_head.weight"} if tied else set())
    for name, tensor in back.items():
        assert torch.equal(tensor, state[name]), name


def test_wrong_shape_names_tensor_and_shapes():
    from mtr_hpc.models.checkpoint import load_into_model
    from mtr_hpc.models.config import ModelConfig
    from mtr_hpc.models.gpt import build_gpt
    from mtr_hpc.models.parallel import init_parallel

    init_parallel(1, 1)
    small = tiny_hf_model(model_type="qwen2", tied=True)
    big = tiny_hf_model(model_type="qwen2", tied=True, intermediate_size=192)
    model = build_gpt(arch_from_hf(small.config), ModelConfig(hf=""), init_weights=False)
    state = hf_to_megatron(big.state_dict(), Layout(arch_from_hf(big.config)))
    with pytest.raises(
        MtrError, match=r"linear_fc1.weight' has shape \(384, 64\) but the model expects \(256, 64\)"
    ):
        load_into_model(model, state)


@pytest.mark.slow
def test_smollm2_real_weights_logits_match():
    from mtr_hpc.models.registry import resolve_model
    from mtr_hpc.models.verify import load_hf_model, prompt_ids

    path = resolve_model("smollm2-135m")
    model = load_hf_model(path)
    assert model.config.num_hidden_layers == 30 and model.config.tie_word_embeddings
    ids = prompt_ids(path, model.config.vocab_size)[:, :8]
    _check_logits(model, ids)


def _last_json(text: str) -> dict:
    lines = [ln for ln in text.splitlines() if ln.startswith("{")]
    assert len(lines) == 1, text
    return json.loads(lines[0])


def test_cli_convert_both_ways_with_verify(tmp_path, capsys):
    hf = save_tiny_hf_model(tmp_path / "hf", model_type="qwen2", tied=False)
    ckpt, out = tmp_path / "ckpt", tmp_path / "hf_back"
    assert (
        mtr_main(["convert", "hf-to-mcore", "--hf", str(hf), "--out", str(ckpt), "--tp", "2", "--verify"])
        == 0
    )
    report = _last_json(capsys.readouterr().out)
    assert report["max_abs_logit_diff"] <= 1e-3 and report["argmax_agree"] == 1.0
    assert report["roundtrip_exact"] is True and report["tp"] == 2
    assert (ckpt / "mp_rank_01" / "model.pt").is_file() and (ckpt / "mcore_config.json").is_file()

    assert mtr_main(["convert", "mcore-to-hf", "--ckpt", str(ckpt), "--out", str(out), "--verify"]) == 0
    report = _last_json(capsys.readouterr().out)
    assert report["max_abs_logit_diff"] <= 1e-3 and report["roundtrip_exact"] is True
    from mtr_hpc.models.verify import load_hf_state_dict

    original, written = load_hf_state_dict(hf), load_hf_state_dict(out)
    assert states_equal(original, written)


def test_cli_mismatched_hf_config_is_a_clear_error(tmp_path, capsys):
    hf = save_tiny_hf_model(tmp_path / "hf", model_type="qwen2", tied=True)
    other = save_tiny_hf_model(tmp_path / "other", model_type="qwen2", tied=True, num_layers=3)
    ckpt = tmp_path / "ckpt"
    assert mtr_main(["convert", "hf-to-mcore", "--hf", str(hf), "--out", str(ckpt)]) == 0
    code = mtr_main(
        [
            "convert",
            "mcore-to-hf",
            "--ckpt",
            str(ckpt),
            "--out",
            str(tmp_path / "o"),
            "--hf-config",
            str(other),
        ]
    )
    assert code == 2
    assert "num_layers" in capsys.readouterr().err
    assert not (tmp_path / "o" / "model.safetensors").exists()
