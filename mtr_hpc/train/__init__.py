"""Training stages: SFT and GRPO on Megatron-Core, with CPU and GPU device seams."""
