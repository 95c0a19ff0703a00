"""Megatron-Core GPT models built from Hugging Face configs, and HF <-> Megatron conversion.

Modules (imported on demand; none is loaded by `import mtr_hpc.models`):
`config` (ModelConfig, Arch from a HF config), `spec` (layer specs, the CPU SDPA core attention),
`parallel` (torch.distributed + Megatron parallel state, CPU RNG tracker), `gpt` (the builder),
`convert` (the TP-aware mapping table), `checkpoint` (on-disk format), `pipeline` (directory
conversions behind `mtr convert`), `verify` (logit checks), `tiny` (tiny random models),
`registry` (model names and the local cache).
"""
